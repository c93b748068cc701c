"""A small kustomize, for the features k8s/ uses and nothing else.

CI machines need not have kubectl, so the manifest test renders with this;
where `kubectl kustomize` exists the test renders with both and requires the
same objects. Supported kustomization fields: `resources` (files and
directories), `components`, `namespace`, `images`, `replicas` and `patches`
(strategic merge patches from `path:` or inline `patch:`, with an optional
`target` by kind/name). Anything else raises, so a kustomization that grows a
feature this file lacks fails loudly instead of rendering differently.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {"apiVersion", "kind", "resources", "components", "namespace", "images", "replicas", "patches"}

# Kinds without a namespace (the ones a kustomization of ours could plausibly hold).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}

# Strategic-merge keys of the Kubernetes list fields a patch of ours may touch.
# Lists not named here are atomic: a patch replaces them whole, as the API
# server's strategic merge does for e.g. affinity terms, Ingress rules and tls.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    # ports: containerPort in a container, port in a Service (chosen per item).
    "ports": ("containerPort", "port"),
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController", "DaemonSet", "Job", "CronJob"}


class KustomizeError(Exception):
    pass


def load_yaml_docs(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def find_kustomization(directory: str) -> str:
    for name in KUSTOMIZATION_FILES:
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise KustomizeError(f"no kustomization file in {directory}")


def build(directory: str) -> list[dict[str, Any]]:
    """Renders the kustomization in `directory`, like `kubectl kustomize`."""
    return _build(os.path.abspath(directory), resources=None, component=False)


def _build(directory: str, resources: list[dict[str, Any]] | None, component: bool) -> list[dict[str, Any]]:
    path = find_kustomization(directory)
    docs = load_yaml_docs(path)
    if len(docs) != 1:
        raise KustomizeError(f"{path}: expected one document")
    k = docs[0]
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unknown)} (extend minikustomize.py)")
    kind = k.get("kind", "Kustomization")
    if component and kind != "Component":
        raise KustomizeError(f"{path}: listed under components but kind is {kind}")
    if not component and kind != "Kustomization":
        raise KustomizeError(f"{path}: kind {kind} used as a kustomization")

    # A component works on the resources accumulated so far; a kustomization starts afresh.
    out: list[dict[str, Any]] = [] if resources is None else resources
    for entry in k.get("resources") or []:
        p = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(p):
            out.extend(_build(p, resources=None, component=False))
        elif os.path.isfile(p):
            out.extend(copy.deepcopy(load_yaml_docs(p)))
        else:
            raise KustomizeError(f"{path}: resource {entry} not found")
    _check_unique(out, path)
    for entry in k.get("components") or []:
        p = os.path.normpath(os.path.join(directory, entry))
        out = _build(p, resources=out, component=True)

    # Transformers, in kustomize's order: patches, namespace, replicas, images.
    for patch in k.get("patches") or []:
        _apply_patch(out, patch, directory, path)
    if "namespace" in k:
        for obj in out:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    for rep in k.get("replicas") or []:
        hits = [o for o in out if o.get("kind") in WORKLOAD_KINDS and o["metadata"]["name"] == rep["name"]]
        if not hits:
            raise KustomizeError(f"{path}: replicas: no workload named {rep['name']}")
        for o in hits:
            o.setdefault("spec", {})["replicas"] = rep["count"]
    for img in k.get("images") or []:
        _set_image(out, img)
    return out


def _check_unique(objs: list[dict[str, Any]], where: str) -> None:
    seen = set()
    for o in objs:
        key = (o.get("apiVersion"), o.get("kind"), o["metadata"].get("namespace"), o["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{where}: duplicate resource {key}")
        seen.add(key)


def _apply_patch(objs: list[dict[str, Any]], patch: dict[str, Any], directory: str, where: str) -> None:
    extra = set(patch) - {"path", "patch", "target"}
    if extra:
        raise KustomizeError(f"{where}: unsupported patch fields {sorted(extra)}")
    if "path" in patch:
        bodies = load_yaml_docs(os.path.join(directory, patch["path"]))
    else:
        bodies = [d for d in yaml.safe_load_all(patch["patch"]) if d is not None]
    for body in bodies:
        if "op" in body or isinstance(body, list):
            raise KustomizeError(f"{where}: JSON 6902 patches are not supported")
        target = patch.get("target") or {
            "kind": body.get("kind"),
            "name": body.get("metadata", {}).get("name"),
        }
        hits = [
            o
            for o in objs
            if (target.get("kind") is None or o.get("kind") == target["kind"])
            and (target.get("name") is None or o["metadata"]["name"] == target["name"])
        ]
        if not hits:
            raise KustomizeError(f"{where}: patch matches nothing: {target}")
        for o in hits:
            merged = strategic_merge(o, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")})
            o.clear()
            o.update(merged)


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """Strategic merge of `patch` into `base` (returns a new value).

    Maps merge key by key, `null` deletes a key, lists of the fields in
    MERGE_KEYS merge item by item on their merge key, other lists are replaced.
    Patch directives (`$patch`, `$retainKeys`, ...) are not supported.
    """
    if isinstance(patch, dict):
        for k in patch:
            if isinstance(k, str) and k.startswith("$"):
                raise KustomizeError(f"patch directive {k} is not supported")
        if not isinstance(base, dict):
            return _strip_nulls(copy.deepcopy(patch))
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = _strip_nulls(copy.deepcopy(v))
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        keys = MERGE_KEYS[field]
        keys = keys if isinstance(keys, tuple) else (keys,)
        out = copy.deepcopy(base)
        for item in patch:
            key = next((k for k in keys if isinstance(item, dict) and k in item), None)
            if key is None:
                raise KustomizeError(f"list item in {field} without merge key {keys}: {item}")
            for i, existing in enumerate(out):
                if isinstance(existing, dict) and existing.get(key) == item[key]:
                    out[i] = strategic_merge(existing, item, None)
                    break
            else:
                out.append(_strip_nulls(copy.deepcopy(item)))
        return out
    return _strip_nulls(copy.deepcopy(patch))


def _strip_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_strip_nulls(x) for x in v]
    return v


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` into its parts (a registry port is not a tag)."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def _set_image(objs: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    for obj in objs:
        for c in pod_containers(obj):
            name, tag, digest = split_image(c["image"])
            if name != spec["name"]:
                continue
            name = spec.get("newName", name)
            if "digest" in spec:
                c["image"] = f"{name}@{spec['digest']}"
                continue
            tag = spec.get("newTag", tag)
            c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest and "newTag" not in spec else "")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload (or a Pod), else None."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("spec")
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def pod_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
