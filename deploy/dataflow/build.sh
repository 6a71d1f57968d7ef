#!/usr/bin/env bash
# Build tokenmill's images and its Dataflow flex template (the template spec JSON in Cloud Storage).
#
#   PROJECT=my-project BUCKET=gs://my-bucket deploy/dataflow/build.sh
#
# Every setting is an environment variable; those below have defaults, PROJECT and BUCKET do not.
set -euo pipefail

PROJECT="${PROJECT:-}"                              # Google Cloud project id (required)
BUCKET="${BUCKET:-}"                                # gs://bucket for the template spec (required)
REGION="${REGION:-us-central1}"                     # region of the Artifact Registry repository
REPOSITORY="${REPOSITORY:-tokenmill}"               # Artifact Registry Docker repository (must exist)
TAG="${TAG:-$(date +%Y%m%d-%H%M%S)}"                # tag of both images
REGISTRY="${REGISTRY:-${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}}"
IMAGE="${IMAGE:-${REGISTRY}/tokenmill:${TAG}}"      # runtime image: deploy/Dockerfile
FLEX_IMAGE="${FLEX_IMAGE:-${REGISTRY}/tokenmill-flex:${TAG}}"  # flex template image: deploy/dataflow/Dockerfile.launcher
TEMPLATE="${TEMPLATE:-${BUCKET}/templates/tokenmill-prepare.json}"  # where the template spec is written
BUILDER="${BUILDER:-cloudbuild}"                    # cloudbuild: gcloud builds submit; docker: docker build + push

usage() {
    cat <<USAGE
usage: PROJECT=ID BUCKET=gs://NAME [REGION=...] [REPOSITORY=...] [TAG=...] [BUILDER=cloudbuild|docker] $0

Builds the runtime image (deploy/Dockerfile) and the flex template image (deploy/dataflow/Dockerfile.launcher),
pushes both to Artifact Registry, and writes the flex template spec (with deploy/dataflow/metadata.json) to
TEMPLATE. Then launch jobs with deploy/dataflow/run.sh.

  PROJECT     Google Cloud project id                  (required)
  BUCKET      gs://bucket for the template spec        (required)
  REGION      Artifact Registry region                 (${REGION})
  REPOSITORY  Artifact Registry Docker repository      (${REPOSITORY})
  TAG         image tag                                (a timestamp)
  IMAGE       runtime image                            (REGISTRY/tokenmill:TAG)
  FLEX_IMAGE  flex template image                      (REGISTRY/tokenmill-flex:TAG)
  TEMPLATE    template spec location                   (BUCKET/templates/tokenmill-prepare.json)
  BUILDER     cloudbuild (no local Docker) or docker   (${BUILDER})
USAGE
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
if [[ -z "${PROJECT}" || -z "${BUCKET}" ]]; then
    usage >&2
    echo "error: set PROJECT and BUCKET" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.."  # the repository root: the images' build context

case "${BUILDER}" in
    cloudbuild)
        gcloud builds submit --project "${PROJECT}" --config deploy/dataflow/cloudbuild.yaml \
            --substitutions "_IMAGE=${IMAGE},_FLEX_IMAGE=${FLEX_IMAGE}" .
        ;;
    docker)
        DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t "${IMAGE}" .
        DOCKER_BUILDKIT=1 docker build -f deploy/dataflow/Dockerfile.launcher \
            --build-arg "RUNTIME_IMAGE=${IMAGE}" -t "${FLEX_IMAGE}" .
        docker push "${IMAGE}"
        docker push "${FLEX_IMAGE}"
        ;;
    *)
        echo "error: BUILDER must be cloudbuild or docker, not ${BUILDER}" >&2
        exit 2
        ;;
esac

gcloud dataflow flex-template build "${TEMPLATE}" \
    --project "${PROJECT}" \
    --image "${FLEX_IMAGE}" \
    --sdk-language PYTHON \
    --metadata-file deploy/dataflow/metadata.json

echo "template: ${TEMPLATE}"
echo "run it:   PROJECT=${PROJECT} BUCKET=${BUCKET} TEMPLATE=${TEMPLATE} IMAGE=${FLEX_IMAGE} \\"
echo "          INPUT=gs://... OUTPUT=gs://... TOKENIZER=gs://.../tokenizer.json deploy/dataflow/run.sh"
