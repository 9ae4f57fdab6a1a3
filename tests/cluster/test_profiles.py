"""Batch-system profiles rendered to the job scripts they would submit (no batch system needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dask.config
import pytest
import yaml

from workbench.cluster import describe, job_script, load_profile
from workbench.cluster.profiles import PBSProfile, SLURMProfile
from workbench.errors import ClusterError, ConfigError

REPO = Path(__file__).resolve().parents[2]


def profile(tmp_path: Path, **keys) -> Path:
    path = tmp_path / f"{keys['type']}.yaml"
    keys = {"shared_temp_directory": str(tmp_path / "tls"), **keys}
    path.write_text(yaml.safe_dump(keys, sort_keys=False))
    return path


def directives(script: str, prefix: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(prefix)]


def test_slurm_script_has_exactly_the_profile_directives(tmp_path):
    path = profile(
        tmp_path, type="slurm", queue="gpu", account="proj42", cores=4, processes=2, memory="16GB",
        walltime="02:00:00", job_name="wb", log_directory=str(tmp_path / "logs"),
        job_extra_directives=["--qos=high", "--constraint=skylake"],
        job_script_prologue=["module load python/3.11", "source ~/venv/bin/activate"],
        interface="lo", local_directory="/scratch/me", worker_lifetime="55m", worker_lifetime_stagger="4m",
    )
    script = job_script(path)
    assert directives(script, "#SBATCH") == [
        "#SBATCH -J wb",
        f"#SBATCH -e {tmp_path}/logs/wb-%J.err",
        f"#SBATCH -o {tmp_path}/logs/wb-%J.out",
        "#SBATCH -p gpu",
        "#SBATCH -A proj42",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=15G",
        "#SBATCH -t 02:00:00",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=skylake",
    ]
    lines = script.splitlines()
    assert "module load python/3.11" in lines and "source ~/venv/bin/activate" in lines
    assert "export OMP_NUM_THREADS=2" in lines  # cores / processes: XGBoost's threads per worker
    command = lines[-1]
    for part in ("--nworkers 2", "--nthreads 2", "--interface lo", "--local-directory /scratch/me",
                 "--lifetime 55m --lifetime-stagger 4m", "--protocol tls://",
                 "--tls-ca-file", "--tls-cert", "--tls-key"):
        assert part in command, part
    assert command.split()[3].startswith("tls://")  # python -m distributed.cli.dask_worker tls://…


def test_pbs_script_has_exactly_the_profile_directives(tmp_path):
    path = profile(
        tmp_path, type="pbs", queue="workq", account="proj42", cores=8, memory="32GB", walltime="04:00:00",
        resource_spec="select=1:ncpus=8:mem=32GB", job_name="wb", log_directory=str(tmp_path / "logs"),
        job_extra_directives=["-m n"],
    )
    assert directives(job_script(path), "#PBS") == [
        "#PBS -N wb",
        "#PBS -q workq",
        "#PBS -A proj42",
        "#PBS -l select=1:ncpus=8:mem=32GB",
        "#PBS -l walltime=04:00:00",
        f"#PBS -e {tmp_path}/logs/",
        f"#PBS -o {tmp_path}/logs/",
        "#PBS -m n",
    ]


def test_sge_and_lsf_scripts(tmp_path):
    sge = job_script(profile(tmp_path, type="sge", queue="all.q", cores=2, memory="4GB", walltime="01:00:00"))
    assert "#$ -q all.q" in sge and "#$ -l h_rt=01:00:00" in sge
    lsf = job_script(profile(tmp_path, type="lsf", queue="normal", cores=2, memory="4GB", walltime="01:00",
                             lsf_units="MB", use_stdin=True))
    assert "#BSUB -q normal" in lsf and "#BSUB -n 2" in lsf and "#BSUB -W 01:00" in lsf


def test_shipped_profiles_render(tmp_path):
    for name in ("slurm", "pbs", "sge", "lsf"):
        loaded = load_profile(REPO / "clusters" / f"{name}.yaml")
        assert loaded.type == name
        assert describe(loaded)["security"] is True


def test_one_worker_process_per_job_unless_asked(tmp_path):
    script = job_script(profile(tmp_path, type="slurm", cores=8, memory="16GB"))
    assert "--nthreads 8" in script and "--nworkers" not in script and "export OMP_NUM_THREADS=8" in script
    with dask.config.set({"jobqueue.slurm.processes": 4}):
        script = job_script(profile(tmp_path, type="slurm", cores=8, memory="16GB"))
    assert "--nworkers 4" in script and "--nthreads 2" in script and "export OMP_NUM_THREADS=2" in script


def test_unset_keys_fall_back_to_dask_jobqueue_config(tmp_path):
    path = profile(tmp_path, type="slurm", walltime="00:05:00")
    with dask.config.set({"jobqueue.slurm.cores": 3, "jobqueue.slurm.memory": "6GB", "jobqueue.slurm.queue": "fromconfig",
                          "jobqueue.slurm.job-script-prologue": ["module load site"]}):
        script = job_script(path)
    assert "#SBATCH -p fromconfig" in script and "#SBATCH --cpus-per-task=3" in script
    assert "#SBATCH -t 00:05:00" in script  # the profile wins over the config
    assert script.index("module load site") < script.index("export OMP_NUM_THREADS=3")


def test_workbench_defaults_are_dask_config(tmp_path):
    path = profile(tmp_path, type="slurm", cores=1, memory="1GB")
    assert describe(path)["n_workers"] == 1 and describe(path, workers=5)["n_workers"] == 5
    with dask.config.set({"workbench.cluster.slurm.security": False, "workbench.cluster.slurm.n_workers": 3}):
        described = describe(path)
    assert "security" not in described and described["n_workers"] == 3


def test_dashboard_binds_to_loopback_unless_asked(tmp_path):
    assert describe(profile(tmp_path, type="slurm", cores=1, memory="1GB"))["scheduler_options"] == {
        "dashboard_address": "127.0.0.1:0"}
    asked = profile(tmp_path, type="pbs", cores=1, memory="1GB", scheduler_options={"dashboard_address": ":8787"})
    assert describe(asked)["scheduler_options"]["dashboard_address"] == ":8787"


def test_profile_errors_point_at_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("type: slurm\ncores: 1\nqueu: debug\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: queu: unknown key \(did you mean 'queue'\?\)"):
        load_profile(path)
    path.write_text("type: slurm\ncores: many\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: cores: "):
        load_profile(path)
    path.write_text("type: torque\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:1: type: unknown cluster type 'torque'.*slurm, pbs"):
        load_profile(path)
    path.write_text("type: slrum\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:1: type: unknown cluster type 'slrum' \(did you mean 'slurm'\?\)"):
        load_profile(path)


def test_a_cluster_type_registered_from_outside_the_package(tmp_path):
    from typing import ClassVar, Literal

    from workbench.cluster import CLUSTER_TYPES, JobqueueProfile

    class HTCondorProfile(JobqueueProfile):
        cluster_class: ClassVar[str] = "dask_jobqueue.HTCondorCluster"
        type: Literal["htcondor"] = "htcondor"
        disk: str | None = None

    CLUSTER_TYPES.register("htcondor", HTCondorProfile)
    try:
        path = profile(tmp_path, type="htcondor", cores=2, memory="4GB", disk="1GB")
        loaded = load_profile(path)
        assert isinstance(loaded, HTCondorProfile) and describe(loaded)["security"] is True
        script = job_script(path)
        assert script.startswith("#!/usr/bin/env condor_submit") and "MY.DaskWorkerCores = 2" in script
        assert "export OMP_NUM_THREADS=2" in script and "--protocol tls://" in script
    finally:
        CLUSTER_TYPES.unregister("htcondor")
    with pytest.raises(ConfigError, match="unknown cluster type 'htcondor'"):
        load_profile(path)


def test_missing_cores_is_one_line(tmp_path):
    with pytest.raises(ClusterError, match="the slurm cluster cannot be set up: .*cores"):
        job_script(profile(tmp_path, type="slurm", queue="debug"))


def test_local_profile_has_no_job_script():
    with pytest.raises(ClusterError, match="submits no job script"):
        job_script("local")


def test_models_match_the_keys_dask_jobqueue_accepts():
    import inspect

    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.pbs import PBSJob
    from dask_jobqueue.slurm import SLURMJob

    accepted = set()
    for fn in (Job.__init__, JobQueueCluster.__init__, SLURMJob.__init__, PBSJob.__init__):
        accepted |= set(inspect.signature(fn).parameters)
    for model in (SLURMProfile, PBSProfile):
        passed = set(model.model_fields) - model._OWN
        assert passed <= accepted, passed - accepted


def test_cli_cluster_script(tmp_path):
    path = profile(tmp_path, type="slurm", queue="debug", cores=1, memory="1GB")
    proc = subprocess.run(["workbench", "cluster", "script", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("#!/usr/bin/env bash") and "#SBATCH -p debug" in proc.stdout
    proc = subprocess.run(["workbench", "cluster", "script", "local"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_workers_per_node_makes_each_job_one_whole_node(tmp_path):
    path = profile(tmp_path, type="slurm", queue="debug", cores=4, memory="8GB", workers_per_node=2,
                   job_extra_directives=["--qos=high"], interface="lo")
    script = job_script(path, workers=6)
    assert directives(script, "#SBATCH")[-2:] == ["#SBATCH --qos=high", "#SBATCH --exclusive"]
    command = script.splitlines()[-1]
    assert "--nworkers 2" in command and "--nthreads 2" in command and "--interface lo" in command
    described = describe(path, workers=6)
    assert described["processes"] == 2 and described["n_workers"] == 6  # 3 jobs: 3 distinct nodes
    pbs = profile(tmp_path, type="pbs", cores=2, memory="4GB", workers_per_node=1)
    assert "#PBS -l place=excl" in directives(job_script(pbs), "#PBS")  # PBS Pro
    torque = profile(tmp_path, type="pbs", cores=4, memory="4GB", workers_per_node=1, resource_spec="nodes=1:ppn=4")
    assert directives(job_script(torque), "#PBS -l") == ["#PBS -l nodes=1:ppn=4", "#PBS -l walltime=00:30:00"]


def test_workers_per_node_and_a_different_processes_are_refused(tmp_path):
    path = profile(tmp_path, type="slurm", cores=4, processes=4, workers_per_node=2)
    with pytest.raises(ConfigError, match="processes 4 and workers_per_node 2 disagree"):
        load_profile(path)
