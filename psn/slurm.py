"""--launcher slurm: RUN/slurm_job.sh, a job array with one fold per task, every path quoted."""
import os
import re
import shlex
import sys

from preprocessing.atomic import write_atomic
from psn.config import RunError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



SLURM_TEMPLATE = """#!/bin/bash
# Written by tools/run_folds.py --launcher slurm: one array task per fold.
# Submit with: sbatch {script}
# then, when all tasks are done, join the predictions with:
#   {python} {tool} {common} --predict-only
# A task that was cancelled or failed is redone by submitting the script again: finished
# folds are skipped, an interrupted one resumes from its last snapshot.
#SBATCH --job-name={job_name}
#SBATCH --array={array}
{resources}
#SBATCH --output={output}
set -euo pipefail
cd {root}
eval "$(tools/build_caffe.sh --print-env{cuda})"
FOLD=$SLURM_ARRAY_TASK_ID
{python} {tool} {common} --folds "$FOLD"{device} --no-predict
"""


def _sbatch_word(text):
    """One word of an #SBATCH line: sbatch splits those lines itself, and the escape that every
    version of it reads is the backslash (older ones know no single quotes)."""
    return re.sub(r"([^A-Za-z0-9_./%=:,+-])", r"\\\1", text)


def write_slurm(cfg, folds):
    """RUN/slurm_job.sh: a job array, one task per fold; with --gpus each task asks for one
    GPU (gres) and trains on it, without them each task trains on one CPU.

    Every path in it is quoted (shlex.quote for bash, backslashes for #SBATCH lines), and a
    path with a newline is refused (RunError): it would end a line, and what follows it
    would run as a command of its own."""
    path = os.path.join(cfg.out, "slurm_job.sh")
    tool = os.path.join(ROOT, "tools", "run_folds.py")
    for text in [path, ROOT, sys.executable, cfg.model] + cfg.flags():
        if "\n" in text or "\r" in text:
            raise RunError("%r holds a newline, which would start a command of its own in the "
                           "SLURM script. Fix: use a folder (and checkout) whose path has no "
                           "newline" % text)
    if cfg.gpus:
        resources, device, cuda = "#SBATCH --gres=gpu:1\n#SBATCH --cpus-per-task=4", " --gpus 0", " --cuda"
    else:
        resources, device, cuda = "#SBATCH --cpus-per-task=1", "", ""
    text = SLURM_TEMPLATE.format(
        script=shlex.quote(path), job_name=_sbatch_word("psn-" + cfg.model),
        array=",".join(str(f) for f in folds),
        # %A and %a are sbatch's; a % of the path itself is written %%.
        output=_sbatch_word(cfg.out.replace("%", "%%") + "/slurm-%A_%a.out"),
        resources=resources, device=device, root=shlex.quote(ROOT), cuda=cuda,
        python=shlex.quote(sys.executable), tool=shlex.quote(tool),
        common=" ".join(shlex.quote(c) for c in cfg.flags()))
    write_atomic(path, text)
    os.chmod(path, 0o755)
    return path
