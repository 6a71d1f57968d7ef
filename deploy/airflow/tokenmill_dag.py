"""Airflow DAGs that run ``tokenmill prepare`` and then check its manifest.

Copy this file, run_tokenmill.py and manifest_check.py into the DAG folder (deploy/README.md says how). One factory,
two DAGs:

- ``tokenmill_daily`` (@daily, no catch-up) reads its settings from the Airflow Variable ``tokenmill_daily``, a JSON
  object with the keys of SETTINGS;
- ``tokenmill_manual`` (triggered by hand) reads them from the run's params, e.g.
  ``airflow dags trigger tokenmill_manual --conf '{"input": "gs://b/corpus", "output": "gs://b/out", ...}'``.

Each run writes to ``<output>/<run date as YYYYMMDD>``: the ``prepare`` task (BeamRunPythonPipelineOperator) runs
run_tokenmill.py with the settings as prepare's options, then ``check_manifest`` fails unless that directory holds
a manifest whose counts are sane (manifest_check.py). Templates render as Python objects
(render_template_as_native_obj): seq_len stays a number, a list of inputs becomes repeated --input options, and an
empty recipe becomes no --recipe at all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pendulum
from jinja2 import StrictUndefined

try:  # Airflow 3
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param
try:
    from airflow.providers.standard.operators.python import PythonOperator
except ImportError:  # Airflow 2 without the standard provider
    from airflow.operators.python import PythonOperator
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

LAUNCHER = str(Path(__file__).resolve().with_name("run_tokenmill.py"))
# The interpreter that runs the pipeline: it needs tokenmill installed (by default, the one running Airflow).
PYTHON = os.environ.get("TOKENMILL_PYTHON", sys.executable)
DAILY_VARIABLE = "tokenmill_daily"

# Each setting's default (REQUIRED: none; the daily Variable must have it, a manual run gets the param's example).
REQUIRED = object()
SETTINGS: dict[str, Any] = {
    "input": REQUIRED,  # file, glob, directory or URL; or a list of them
    "output": REQUIRED,  # the run writes to <output>/<YYYYMMDD>
    "tokenizer": REQUIRED,  # tokenizer.json or tiktoken rank file
    "seq_len": 2048,
    "recipe": "",  # fineweb, gopher, c4 or a recipe YAML file; empty: no filtering
    "runner": "FnApiRunner",  # or DataflowRunner, SparkRunner, FlinkRunner, PortableRunner
    "beam_options": {},  # more Beam options, e.g. {"temp_location": "gs://b/tmp", "sdk_container_image": "..."}
    "project": "",  # DataflowRunner: Google Cloud project
    "region": "us-central1",  # DataflowRunner: region
}
EXAMPLES = {"input": "/data/corpus", "output": "/data/tokenmill", "tokenizer": "/data/tokenizer.json"}


def check_prepare_output(output: str) -> dict[str, int]:
    """The check task: fail unless ``output`` holds a finished prepare result with sane counts; else its totals."""
    from manifest_check import check_output  # beside this file: Airflow puts the DAG folder on sys.path

    return check_output(output)


def setting(source: str, key: str) -> str:
    """The Jinja expression of one setting, read from ``source`` (``params`` or the daily Variable)."""
    default = SETTINGS[key]
    if default is REQUIRED:
        return f"{source}.{key}"
    if default == "":  # empty means unset: None, which the operator leaves out of the command line
        return f"{source}.get({key!r}) or None"
    return f"{source}.get({key!r}, {default!r})"


def template(expression: str) -> str:
    """``expression`` as a template."""
    return "{{ " + expression + " }}"


# The run's date: the logical date's; a run triggered without one (Airflow 3) takes the date it was queued for.
RUN_DATE = template("ds_nodash if ds_nodash is defined else dag_run.run_after.strftime('%Y%m%d')")


def output_template(source: str) -> str:
    """The run's output directory: the configured output, then the run date (YYYYMMDD)."""
    return template(f"{setting(source, 'output')}.rstrip('/')") + "/" + RUN_DATE


def make_dag(dag_id: str, schedule: str | None, source: str, params: dict[str, Any] | None = None) -> DAG:
    """A DAG running prepare with the settings read from ``source`` (a template expression), then the check."""
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=params or {},
        render_template_as_native_obj=True,
        template_undefined=StrictUndefined,  # a missing setting fails the task, naming it
        tags=["tokenmill"],
        doc_md=__doc__,
    ) as dag:
        output = output_template(source)
        runner = setting(source, "runner")
        prepare = BeamRunPythonPipelineOperator(
            task_id="prepare",
            py_file=LAUNCHER,
            py_interpreter=PYTHON,
            runner=template(runner),
            # keys as prepare's options are spelled (seq-len): the operator passes them as --KEY=VALUE
            pipeline_options={
                "input": template(setting(source, "input")),
                "output": output,
                "tokenizer": template(setting(source, "tokenizer")),
                "seq-len": template(setting(source, "seq_len")),
                "recipe": template(setting(source, "recipe")),
                # Beam's log lines (hidden unless --verbose) carry the Dataflow job id the operator watches for
                "verbose": template(f"({runner}) == 'DataflowRunner'"),
            },
            default_pipeline_options=template(setting(source, "beam_options")),
            dataflow_config={  # used with DataflowRunner only
                "job_name": dag_id.replace("_", "-"),  # the operator appends a unique suffix
                "project_id": template(setting(source, "project")),
                "location": template(setting(source, "region")),
            },
        )
        check = PythonOperator(
            task_id="check_manifest",
            python_callable=check_prepare_output,
            op_kwargs={"output": output},
        )
        prepare >> check
    return dag


tokenmill_daily = make_dag("tokenmill_daily", "@daily", f"var.json.{DAILY_VARIABLE}")
tokenmill_manual = make_dag(
    "tokenmill_manual", None, "params",
    params={key: Param(EXAMPLES.get(key, default), description=f"tokenmill prepare: {key}")
            for key, default in SETTINGS.items()},
)
