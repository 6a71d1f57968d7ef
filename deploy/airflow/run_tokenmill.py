"""The pipeline file Airflow's BeamRunPythonPipelineOperator runs: ``tokenmill prepare`` with the operator's options.

The operator runs ``PYTHON run_tokenmill.py --runner=RUNNER --KEY=VALUE ...``; the DAG spells tokenmill's options
as on the command line (``seq-len``), so they reach prepare's parser as they are and the rest goes to Beam.
"""

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
