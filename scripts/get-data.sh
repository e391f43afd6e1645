#!/usr/bin/env bash
# Make data/ match data.dvc: pull it from the DVC remote when the remote has it, else ingest the
# default source (ingest is byte-stable, so the hash equals the recorded one), then cache and push it.
set -euo pipefail
cd "$(dirname "$0")/.."

if dvc status data.dvc 2>/dev/null | grep -q "up to date\|Data and pipelines are up to date"; then
  echo ">> data/ already matches data.dvc"
  exit 0
fi
if dvc pull data.dvc 2>/dev/null; then
  echo ">> data/ pulled from the DVC remote"
  exit 0
fi
echo ">> data/ not on the DVC remote: ingesting ingest.source (\`productgan params show --section ingest\`)"
python -m productgan ingest --out data
if [ -f data.dvc ] && git cat-file -e HEAD:data.dvc 2>/dev/null; then
  # the recorded version: the fresh ingest must reproduce it exactly
  dvc commit --force data.dvc
  if ! git diff --quiet -- data.dvc; then
    echo "!! ingested data/ differs from the version recorded in data.dvc:" >&2
    git --no-pager diff -- data.dvc >&2
    echo "   the source changed; if that is intended, commit the new data.dvc (a new dataset version)" >&2
    exit 1
  fi
else
  dvc add data
fi
dvc push data.dvc || echo ">> (dvc push to the default remote failed; data/ is cached locally)"
