"""The compiled KFP v2 pipeline spec (IR YAML) that both remote runners receive, read back and checked."""

from __future__ import annotations

import json

import pytest

from ml_pipeline.errors import ConfigError
from ml_pipeline.kfp.compiler import compile_pipeline, load_ir
from ml_pipeline.spec import STAGES

TASKS = [stage.lower() for stage in STAGES]


def compiled(spec, target, fingerprints, **options):
    text = compile_pipeline(spec, target, run_id="run-7", fingerprints=fingerprints, **options)
    return load_ir(text)


def executor(ir, stage):
    return ir["deploymentSpec"]["executors"][f"exec-{stage.lower()}"]["container"]


def arg(container, name):
    args = container["args"]
    return args[args.index(name) + 1]


@pytest.mark.parametrize("model_type", ["retrieval", "ranking", "multitask"])
def test_the_eight_stages_are_tasks_in_pipeline_order_each_after_the_one_before(
    model_type, make_spec, fingerprints_of, vertex
):
    spec = make_spec(model_type)
    ir, _ = compiled(spec, vertex, fingerprints_of(spec))
    tasks = ir["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(TASKS)
    assert [tasks[name]["taskInfo"]["name"] for name in TASKS] == list(STAGES)
    for before, after in zip(TASKS, TASKS[1:]):
        assert tasks[after]["dependentTasks"] == [before]
    assert "dependentTasks" not in tasks["compile"]


@pytest.mark.parametrize("model_type", ["retrieval", "ranking", "multitask"])
def test_each_stage_runs_the_stage_command_of_the_pipeline_image_with_the_runs_parameters(
    model_type, make_spec, fingerprints_of, vertex
):
    spec = make_spec(model_type)
    prints = fingerprints_of(spec)
    ir, _ = compiled(spec, vertex, prints)
    for stage in STAGES:
        container = executor(ir, stage)
        assert container["image"] == vertex.image
        assert container["command"] == ["python", "-m", "ml_pipeline", "stage", stage]
        assert arg(container, "--spec") == "{{$.inputs.parameters['spec']}}"
        assert arg(container, "--root") == "{{$.inputs.parameters['artifact_root']}}"
        assert arg(container, "--run-id") == "{{$.inputs.parameters['run_id']}}"
        assert arg(container, "--webhook-url") == "{{$.inputs.parameters['webhook_url']}}"
        assert arg(container, "--webhook-secret") == "{{$.inputs.parameters['webhook_secret']}}"
        assert arg(container, "--fingerprint") == prints[stage]


def test_the_cache_keys_are_the_local_fingerprints(make_spec, fingerprints_of, vertex):
    spec = make_spec("multitask")
    prints = fingerprints_of(spec)
    ir, _ = compiled(spec, vertex, prints)
    tasks = ir["root"]["dag"]["tasks"]
    for stage in STAGES:
        assert tasks[stage.lower()]["cachingOptions"] == {"enableCache": True, "cacheKey": prints[stage]}


def test_the_pipeline_root_and_the_runs_parameters_are_compiled_in_but_the_webhook_secret_is_not(
    make_spec, fingerprints_of, vertex
):
    spec = make_spec()
    ir, _ = compiled(spec, vertex, fingerprints_of(spec))
    assert ir["defaultPipelineRoot"] == "gs://acme-staging/pipelines"
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    assert json.loads(parameters["spec"]["defaultValue"]) == spec.model_dump(mode="json")
    assert parameters["artifact_root"]["defaultValue"] == "/gcs/acme-staging/pipelines/artifacts"
    assert parameters["run_id"]["defaultValue"] == "run-7"
    assert parameters["webhook_url"]["defaultValue"] == vertex.webhook_url
    assert "defaultValue" not in parameters["webhook_secret"]  # given at submission, never in the file


def test_compiling_the_same_run_twice_gives_the_same_spec(make_spec, fingerprints_of, vertex):
    spec = make_spec("ranking", gpus=2)
    prints = fingerprints_of(spec)
    first = compile_pipeline(spec, vertex, run_id="run-7", fingerprints=prints, gpu_type="T4")
    second = compile_pipeline(spec, vertex, run_id="run-7", fingerprints=prints, gpu_type="T4")
    assert first == second


def test_an_experiment_has_no_pusher_task(make_spec, fingerprints_of, vertex):
    spec = make_spec(stages=[stage for stage in STAGES if stage != "Pusher"])
    ir, _ = compiled(spec, vertex, fingerprints_of(spec))
    assert "pusher" not in ir["root"]["dag"]["tasks"]
    assert ir["root"]["dag"]["tasks"]["evaluator"]["dependentTasks"] == ["trainer"]


# --------------------------------------------------------------------------- the Trainer on Vertex AI


def trainer_pools(ir):
    return json.loads(arg(executor(ir, "Trainer"), "--worker-pools"))


def test_the_gpu_trainer_is_a_custom_job_in_the_gpu_region_with_the_runs_worker_pool_first(
    make_spec, fingerprints_of, vertex
):
    spec = make_spec("multitask", gpus=2)
    ir, _ = compiled(spec, vertex, fingerprints_of(spec), gpu_type="L4", preemptible=True)
    container = executor(ir, "Trainer")
    assert container["command"] == ["python", "-m", "ml_pipeline", "launch-trainer"]
    assert container["image"] == vertex.image  # the launcher runs in the pipeline's (data) region
    assert arg(container, "--region") == "europe-west4"
    assert arg(container, "--project") == "acme-recs"
    assert arg(container, "--service-account") == vertex.service_account
    assert "--spot" in container["args"]
    first = trainer_pools(ir)[0]
    assert first == {
        "machine_spec": {"machine_type": "g2-standard-24", "accelerator_type": "NVIDIA_L4", "accelerator_count": 2},
        "replica_count": 1,
        "container_spec": {"image_uri": vertex.gpu_image},
    }


def test_the_fallback_order_follows_the_runs_own_shape(make_spec, fingerprints_of, vertex):
    spec = make_spec(gpus=1)
    ir, _ = compiled(spec, vertex, fingerprints_of(spec), gpu_type="T4")
    shapes = [
        (
            pool["machine_spec"]["accelerator_count"],
            pool["machine_spec"]["accelerator_type"],
            pool["machine_spec"]["machine_type"],
        )
        for pool in trainer_pools(ir)
    ]
    assert shapes == [
        (1, "NVIDIA_TESLA_T4", "n1-standard-8"),
        (4, "NVIDIA_TESLA_T4", "n1-standard-32"),
        (4, "NVIDIA_TESLA_V100", "n1-standard-16"),
        (4, "NVIDIA_L4", "g2-standard-48"),
        (2, "NVIDIA_TESLA_T4", "n1-standard-16"),
    ]
    assert "--no-spot" in executor(ir, "Trainer")["args"]


@pytest.mark.parametrize(
    ("gpu_type", "count", "machine"),
    [
        ("T4", 4, "n1-standard-32"),
        ("L4", 8, "g2-standard-96"),
        ("A100", 2, "a2-highgpu-2g"),
        ("A100", 8, "a2-highgpu-8g"),
    ],
)
def test_the_machine_type_matches_the_accelerator_and_count(
    gpu_type, count, machine, make_spec, fingerprints_of, vertex
):
    spec = make_spec(gpus=count)
    ir, _ = compiled(spec, vertex, fingerprints_of(spec), gpu_type=gpu_type)
    assert trainer_pools(ir)[0]["machine_spec"]["machine_type"] == machine


def test_a_gpu_type_the_training_region_lacks_is_refused_naming_the_regions_that_have_it(
    make_spec, fingerprints_of, make_target
):
    spec = make_spec(gpus=2)
    warsaw = make_target("vertex", gpu_region="europe-central2")
    with pytest.raises(ConfigError) as refused:
        compiled(spec, warsaw, fingerprints_of(spec), gpu_type="T4")
    [problem] = refused.value.problems
    assert problem.field == "gpu_config.gpu_type"
    assert "not available for training in europe-central2" in problem.message
    assert "europe-west4" in problem.message and "us-central1" in problem.message


def test_h100_is_refused_in_europe_west4_but_offered_in_us_central1(make_spec, fingerprints_of, make_target):
    spec = make_spec(gpus=8)
    with pytest.raises(ConfigError, match="regions with H100: us-central1, us-west1"):
        compiled(spec, make_target("vertex"), fingerprints_of(spec), gpu_type="H100")
    ir, _ = compiled(spec, make_target("vertex", gpu_region="us-central1"), fingerprints_of(spec), gpu_type="H100")
    assert trainer_pools(ir)[0]["machine_spec"]["machine_type"] == "a3-highgpu-8g"


def test_a_cpu_trainer_is_an_ordinary_stage_task(make_spec, fingerprints_of, vertex):
    spec = make_spec(gpus=0)
    ir, _ = compiled(spec, vertex, fingerprints_of(spec))
    assert executor(ir, "Trainer")["command"] == ["python", "-m", "ml_pipeline", "stage", "Trainer"]
    assert "resources" not in executor(ir, "Trainer")


# --------------------------------------------------------------------------- the Trainer on Kubeflow


def test_on_kubeflow_the_trainer_asks_for_nvidia_gpus_on_nodes_with_that_accelerator(
    make_spec, fingerprints_of, kubeflow
):
    spec = make_spec("retrieval", gpus=4)
    ir, platform = compiled(spec, kubeflow, fingerprints_of(spec), gpu_type="T4")
    container = executor(ir, "Trainer")
    assert container["image"] == kubeflow.gpu_image
    assert container["command"] == [
        *("python", "-m", "ml_pipeline.kfp.entrypoint", "--gpus", "4", "--"),  # sees its GPUs, or refuses
        *("python", "-m", "ml_pipeline", "stage", "Trainer"),
    ]
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "4"
    selector = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-trainer"]["nodeSelector"]
    assert selector == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}}
    assert ir["defaultPipelineRoot"] == "minio://mlpipeline/v2"
    assert executor(ir, "Transform")["image"] == kubeflow.image


def test_on_kubeflow_a_preemptible_trainer_is_retried(make_spec, fingerprints_of, kubeflow):
    spec = make_spec(gpus=2)
    ir, _ = compiled(spec, kubeflow, fingerprints_of(spec), gpu_type="L4", preemptible=True)
    assert ir["root"]["dag"]["tasks"]["trainer"]["retryPolicy"]["maxRetryCount"] == 3


def test_a_bigquery_source_tells_compile_and_example_gen_where_to_export_its_rows(make_spec, fingerprints_of, vertex):
    spec = make_spec()
    dataset = spec.dataset.model_dump(mode="json")
    dataset["source"] = {"kind": "bigquery", "project": "acme-recs", "table": "shop.orders"}
    spec = make_spec(dataset=dataset)
    ir, _ = compiled(spec, vertex, fingerprints_of(spec))
    export = [{"name": "BIGQUERY_EXPORT_URI", "value": "gs://acme-staging/pipelines/bigquery-exports"}]
    assert executor(ir, "Compile")["env"] == executor(ir, "ExampleGen")["env"] == export
    assert "env" not in executor(ir, "StatisticsGen")
