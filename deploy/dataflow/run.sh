#!/usr/bin/env bash
# Launch `tokenmill prepare` on Dataflow from the flex template that build.sh wrote.
#
#   PROJECT=my-project BUCKET=gs://my-bucket TEMPLATE=gs://my-bucket/templates/tokenmill-prepare.json \
#   IMAGE=REGION-docker.pkg.dev/my-project/tokenmill/tokenmill-flex:TAG \
#   INPUT='gs://my-bucket/corpus/*.jsonl.zst' OUTPUT=gs://my-bucket/out/run1 \
#   TOKENIZER=gs://my-bucket/tokenizer.json SEQ_LEN=4096 deploy/dataflow/run.sh
#
# Every setting is an environment variable; those below have defaults, the others do not.
set -euo pipefail

PROJECT="${PROJECT:-}"                         # Google Cloud project id (required)
BUCKET="${BUCKET:-}"                           # gs://bucket for staging and temporary files (required)
TEMPLATE="${TEMPLATE:-}"                       # the template spec build.sh wrote (required)
IMAGE="${IMAGE:-}"                             # the flex template image build.sh pushed: the workers' image (required)
INPUT="${INPUT:-}"                             # input file, glob or directory; several: comma-separated (required)
OUTPUT="${OUTPUT:-}"                           # output directory (required)
TOKENIZER="${TOKENIZER:-}"                     # tokenizer.json or tiktoken rank file (required)
SEQ_LEN="${SEQ_LEN:-2048}"                     # tokens per packed row
RECIPE="${RECIPE:-}"                           # filter/dedup recipe: fineweb, gopher, c4 or a YAML file (default: none)
REGION="${REGION:-us-central1}"                # Dataflow region
JOB_NAME="${JOB_NAME:-tokenmill-prepare-$(date +%Y%m%d-%H%M%S)}"
MAX_WORKERS="${MAX_WORKERS:-10}"               # autoscaling limit
MACHINE_TYPE="${MACHINE_TYPE:-n2-standard-4}"  # worker machine type
EXTRA_PARAMETERS="${EXTRA_PARAMETERS:-}"       # more template parameters, '~'-separated: shard_rows=4096~packing=best-fit

usage() {
    cat <<USAGE
usage: PROJECT=ID BUCKET=gs://NAME TEMPLATE=gs://... IMAGE=... INPUT=... OUTPUT=... TOKENIZER=... [SEQ_LEN=N] $0

Launches tokenmill prepare as a Dataflow job from the flex template (see deploy/README.md). The parameters are
the options of tokenmill prepare by their argparse names (seq_len, shard_rows, ...), listed in
deploy/dataflow/metadata.json; flags take true or false, repeatable options a comma-separated list.

  PROJECT           Google Cloud project id                          (required)
  BUCKET            gs://bucket for staging and temporary files      (required)
  TEMPLATE          template spec written by build.sh                (required)
  IMAGE             flex template image (also the workers' image)    (required)
  INPUT             input path(s), comma-separated                   (required)
  OUTPUT            output directory                                 (required)
  TOKENIZER         tokenizer file                                   (required)
  SEQ_LEN           tokens per row                                   (${SEQ_LEN})
  RECIPE            recipe preset or YAML file                       (none)
  REGION            Dataflow region                                  (${REGION})
  JOB_NAME          Dataflow job name                                (tokenmill-prepare-TIMESTAMP)
  MAX_WORKERS       maximum workers                                  (${MAX_WORKERS})
  MACHINE_TYPE      worker machine type                              (${MACHINE_TYPE})
  EXTRA_PARAMETERS  more parameters, '~'-separated                   (none)
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
for name in PROJECT BUCKET TEMPLATE IMAGE INPUT OUTPUT TOKENIZER; do
    if [[ -z "${!name}" ]]; then
        usage >&2
        echo "error: set ${name}" >&2
        exit 2
    fi
done

# gcloud splits --parameters on commas; '^~^' makes '~' the separator so that comma-separated lists pass whole.
parameters="input=${INPUT}~output=${OUTPUT}~tokenizer=${TOKENIZER}~seq_len=${SEQ_LEN}"
parameters+="~sdk_container_image=${IMAGE}"
if [[ -n "${RECIPE}" ]]; then
    parameters+="~recipe=${RECIPE}"
fi
if [[ -n "${EXTRA_PARAMETERS}" ]]; then
    parameters+="~${EXTRA_PARAMETERS}"
fi

gcloud dataflow flex-template run "${JOB_NAME}" \
    --project "${PROJECT}" \
    --region "${REGION}" \
    --template-file-gcs-location "${TEMPLATE}" \
    --staging-location "${BUCKET}/staging" \
    --temp-location "${BUCKET}/tmp" \
    --max-workers "${MAX_WORKERS}" \
    --worker-machine-type "${MACHINE_TYPE}" \
    --parameters "^~^${parameters}"

echo "launched ${JOB_NAME}: manifest.json appears in ${OUTPUT} when the job finishes"
echo "check it: tokenmill inspect ${OUTPUT} --verify"
