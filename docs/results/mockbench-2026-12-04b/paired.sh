#!/bin/bash
# alternate kit runs of the magicore rows at two commits
cd /work/main
for round in 1 2; do
  for rev in edfa12c main; do
    git -C /work/main checkout -q $rev
    echo "== $rev round $round $(git -C /work/main rev-parse --short HEAD) load $(cut -d' ' -f1 /proc/loadavg)"
    (cd /work/shared/mockbench && MOCKBENCH_VENV=~/mb/.venv OUT=~/mb/out MOCKBENCH_MAGICORE_PYTHON=/work/main/.venv/bin/python ./run.sh --frameworks magicore,magicore-sc --ks 8,32 --concurrency 16 --repeat 3 2>&1 | grep -E "^magicore")
  done
done
git -C /work/main checkout -q main
