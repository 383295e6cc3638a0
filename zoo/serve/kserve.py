"""`zoo serve --print-config kserve`: the manifests that run `zoo serve` on KServe as a custom serving runtime
speaking the Open Inference Protocol v2. zoo orchestrates nothing itself; this is what a person applies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from zoo import __version__

CONFIGS = ("kserve",)
PORT = 8080   # KServe's port for a predictor container
MODEL_MOUNT = "/mnt/models"   # where KServe's storage initializer puts what storageUri names


@dataclass
class ServingConfig:
    documents: list[dict[str, Any]]   # the Kubernetes objects, in the order to apply them
    text: str                         # the same as YAML documents, with a header saying what to fill in


def kserve_manifest(name: str, *, backend: str, max_batch: int, max_wait_ms: float, top_k: int,
                    workers: int) -> ServingConfig:
    """A ServingRuntime running `zoo serve` (v2 protocol, probes on the v2 health routes) and the
    InferenceService that serves the model ``name`` with it, as YAML documents. The model is served under the
    service's name, the one KServe's clients use in /v2/models/NAME."""
    import yaml

    service = _dns_name(name)
    args = ["serve", MODEL_MOUNT, "--host", "0.0.0.0", "--port", str(PORT), "--backend", backend,
            "--max-batch", str(max_batch), "--max-wait-ms", f"{max_wait_ms:g}", "--top-k", str(top_k),
            "--workers", str(workers), "--name", service]
    probe = {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "initialDelaySeconds": 5, "periodSeconds": 5}
    runtime: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "zoo-serve"},
        "spec": {
            "supportedModelFormats": [{"name": "zoo", "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2"],
            "containers": [{
                "name": "kserve-container",
                "image": f"zoo-hub:{__version__}",
                "command": ["zoo"],
                "args": args,
                "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                "readinessProbe": probe,
                "livenessProbe": {**probe, "httpGet": {"path": "/v2/health/live", "port": PORT}},
            }],
        },
    }
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": service},
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "zoo"},
            "protocolVersion": "v2",
            "runtime": "zoo-serve",
            "storageUri": f"pvc://zoo-models/{name}",
        }}},
    }
    header = ("# zoo serve on KServe: a custom serving runtime (Open Inference Protocol v2) and the InferenceService "
              "using it.\n"
              f"# image: an image with zoo-hub installed (pip install zoo-hub); storageUri: where the folder {name!r}\n"
              f"# is stored (KServe copies it to {MODEL_MOUNT}). Apply with: kubectl apply -f FILE\n")
    documents = [runtime, inference_service]
    return ServingConfig(documents, header + yaml.safe_dump_all(documents, sort_keys=False))


def _dns_name(name: str) -> str:
    """``name`` as a Kubernetes object name: lower-case letters, digits and dashes, at most 63 characters."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return cleaned or "zoo-model"
