#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, from the project's own tests and examples.

Writes fuzz/seeds/<target>/ (not committed: `cargo fuzz cmin` keeps what adds coverage in
fuzz/corpus/<target>/, which is). Run from anywhere: python3 fuzz/seeds.py. A development tool:
CI and the corpus replay never run it.

- reference, platform: the string literals of the upstream test tables (and the modules' tests)
- dockerfile: examples/**/Dockerfile*, and the Dockerfile texts in the Rust tests
- oci_json: JSON documents in the tests, and the documents of the archives below
- archive_load: small docker and OCI archives (plain, gzip, zstd), some using the blobs of the
  store image every input is loaded next to (manifold::fuzzing::base_image), some hostile
- layer_extract: small layers with ordinary entries, whiteouts, links and escape attempts
- dockerignore, bake, www_authenticate: the files and strings of their tests
"""

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"

STRING = re.compile(r'(?<![A-Za-z0-9_#])"((?:[^"\\\n]|\\.)*)"')
RAW = re.compile(r'r(#+)"(.*?)"\1', re.S)


def unescape(s):
    return (
        s.replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace('\\"', '"')
        .replace("\\\\", "\\")
    )


def strings(*paths):
    out = []
    for p in paths:
        text = (ROOT / p).read_text()
        out += [unescape(m.group(1)) for m in STRING.finditer(text)]
    return out


def raw_strings(*paths):
    out = []
    for p in paths:
        text = (ROOT / p).read_text()
        out += [m.group(2) for m in RAW.finditer(text)]
        out += [unescape(m.group(1)) for m in STRING.finditer(text) if "\\n" in m.group(1)]
    return out


def write(target, items):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for item in items:
        data = item.encode() if isinstance(item, str) else item
        if not data:
            continue
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        n += 1
    print(f"{target}: {n} seeds")


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def desc(media_type, b, **extra):
    return {"mediaType": media_type, "digest": sha(b), "size": len(b), **extra}


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    """entries: (name, kind, data_or_linkname, extra dict) tuples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, data, extra in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            info.type = kind
            for k, v in extra.items():
                setattr(info, k, v)
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data
                t.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return buf.getvalue()


def f(name, data=b"", **extra):
    return (name, tarfile.REGTYPE, data if isinstance(data, bytes) else data.encode(), extra)


def d(name, **extra):
    return (name, tarfile.DIRTYPE, None, {"mode": 0o755, **extra})


def sym(name, target):
    return (name, tarfile.SYMTYPE, target, {})


def hard(name, target):
    return (name, tarfile.LNKTYPE, target, {})


def zstd(b):
    return subprocess.run(["zstd", "-q", "-c"], input=b, capture_output=True, check=True).stdout


# The template store's image (keep in step with manifold::fuzzing::base_image).
BASE_LAYER = bytes(1024)
BASE_CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(BASE_LAYER)]},
    },
    separators=(",", ":"),
).encode()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def layers():
    ordinary = tar_bytes(
        [
            d("bin/"),
            f("bin/hello", "#!/bin/sh\necho hello\n", mode=0o755),
            sym("bin/sh", "busybox"),
            hard("bin/hello2", "bin/hello"),
            d("etc/"),
            f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            f("etc/group", "root:x:0:\n"),
            (
                "etc/xattr",
                tarfile.REGTYPE,
                b"x",
                {"pax_headers": {"SCHILY.xattr.user.note": "y", "SCHILY.xattr.trusted.overlay.opaque": "y"}},
            ),
            f("tmp/.wh.gone"),
            f("var/.wh..wh..opq"),
            ("dev/fifo", tarfile.FIFOTYPE, None, {}),
            ("dev/null", tarfile.CHRTYPE, None, {"devmajor": 1, "devminor": 3}),
            d("./", mode=0o700),
        ]
    )
    hostile = [
        tar_bytes([f("../canary", "overwritten")]),
        tar_bytes([f("../../canary", "overwritten")]),
        tar_bytes([f("/../../canary", "overwritten")]),
        tar_bytes([sym("up", ".."), f("up/canary", "overwritten")]),
        tar_bytes([sym("up", "../.."), f("up/canary", "overwritten")]),
        tar_bytes([sym("abs", "/"), f("abs/../canary", "x")]),
        tar_bytes([sym("c", "../canary"), f("c", "overwritten")]),
        tar_bytes([sym("c", "../canary"), hard("h", "c"), f("h", "x")]),
        tar_bytes([hard("h", "../canary"), f("h", "overwritten")]),
        tar_bytes([sym("loop", "loop"), f("loop/x", "x")]),
        tar_bytes([sym("a", "b"), sym("b", "a"), f("a/x", "x")]),
        tar_bytes([sym("up", ".."), f(".wh.canary")]),
        tar_bytes([sym("up", ".."), f("up/.wh.canary")]),
        tar_bytes([sym("up", ".."), f("up/.wh..wh..opq")]),
        tar_bytes([sym("up", ".."), d("up/rootfs/", mode=0o000)]),
        tar_bytes([d("./", mode=0o000, uid=1234, gid=1234)]),
        tar_bytes([f("a/b/c/d/e", "deep"), f(".wh.a")]),
        tar_bytes([f("x" * 200, "long name")], fmt=tarfile.GNU_FORMAT),
        tar_bytes([f("x", "1"), d("x/"), f("x/y", "2"), f("x", "3")]),
    ]
    return [ordinary, gzip.compress(ordinary, mtime=0), zstd(ordinary), BASE_LAYER] + hostile


def docker_archive(layer, config_extra=None, tags=("fuzz.test/img:1",), layer_path=None):
    diff = sha(layer)
    config = json.dumps(
        {
            "architecture": "arm64",
            "variant": "v8",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
            **(config_extra or {}),
        }
    ).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    lpath = layer_path or (hashlib.sha256(layer).hexdigest() + "/layer.tar")
    manifest = [{"Config": cfg_name, "RepoTags": list(tags), "Layers": [lpath]}]
    return tar_bytes(
        [
            f(cfg_name, config),
            d(lpath.split("/")[0] + "/") if "/" in lpath else d("./"),
            f(lpath, layer),
            f("manifest.json", json.dumps(manifest)),
            f("repositories", json.dumps({"fuzz.test/img": {"1": diff[7:]}})),
        ]
    ), [config, json.dumps(manifest).encode()]


def oci_archive(blobs, index, extra=()):
    entries = [f("oci-layout", '{"imageLayoutVersion":"1.0.0"}'), d("blobs/"), d("blobs/sha256/")]
    for b in blobs:
        entries.append(f("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b))
    entries.append(f("index.json", json.dumps(index)))
    entries += list(extra)
    return tar_bytes(entries)


def archives():
    small = tar_bytes([f("hello", "hello\n")])
    out, docs = [], []

    a, j = docker_archive(small)
    out += [a, gzip.compress(a, mtime=0), zstd(a)]
    docs += j
    a, j = docker_archive(gzip.compress(small, mtime=0), tags=())
    out.append(a)
    a, j = docker_archive(small, tags=("fuzz.test/img:1", "other.test/x/y:2"))
    out.append(a)
    # docker save's dedup: the layer as a symlink to another's.
    a, _ = docker_archive(small, layer_path="l2/layer.tar")
    out.append(
        tar_bytes(
            [
                f("real/layer.tar", small),
                sym("l2/layer.tar", "../real/layer.tar"),
                *[
                    (m.name, tarfile.REGTYPE, tarfile.open(fileobj=io.BytesIO(a)).extractfile(m).read(), {})
                    for m in tarfile.open(fileobj=io.BytesIO(a))
                    if m.isfile() and m.name != "l2/layer.tar"
                ],
            ]
        )
    )

    # OCI: an image of its own, one that uses the store's base layer and config without holding
    # them, an index over both, an index in an index, and broken ones.
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(small)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, config), "layers": [desc(OCI_LAYER, small)]}).encode()
    on_base = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, BASE_CONFIG), "layers": [desc(OCI_LAYER, BASE_LAYER)], "annotations": {"x": "y"}}).encode()
    plat = {"architecture": "amd64", "os": "linux"}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_MANIFEST, manifest, platform=plat), desc(OCI_MANIFEST, on_base, platform={"architecture": "arm64", "os": "linux", "variant": "v8"})]}).encode()
    outer = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_INDEX, index)]}).encode()
    named = lambda name, b, mt=OCI_MANIFEST: desc(mt, b, annotations={"org.opencontainers.image.ref.name": name})
    out.append(oci_archive([config, manifest, small], {"schemaVersion": 2, "manifests": [named("fuzz.test/oci:1", manifest)]}))
    out.append(oci_archive([on_base], {"schemaVersion": 2, "manifests": [named("latest", on_base)]}))
    out.append(oci_archive([config, manifest, small, on_base, index, outer], {"schemaVersion": 2, "manifests": [named("fuzz.test/idx:1", outer, OCI_INDEX), desc(OCI_INDEX, index, annotations={"io.containerd.image.name": "fuzz.test/c:2"})]}))
    out.append(oci_archive([config, manifest], {"schemaVersion": 2, "manifests": [named("fuzz.test/missing:1", manifest)]}))
    out.append(oci_archive([config, manifest, small], {"schemaVersion": 2, "manifests": [desc(OCI_MANIFEST, manifest) | {"size": 1}]}))
    out.append(oci_archive([config, small], {"schemaVersion": 2, "manifests": [named("fuzz.test/x:1", manifest)]}, [f("blobs/sha256/" + hashlib.sha256(manifest).hexdigest(), b"not it")]))
    out.append(oci_archive([config, manifest, small], {"schemaVersion": 2, "manifests": [named("Bad Name", manifest)]}))
    out.append(oci_archive([], {"schemaVersion": 2, "manifests": []}, [f("../escape", "x")]))
    docs += [config, manifest, on_base, index, outer, BASE_CONFIG]
    return out, docs


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    refs = strings("src/reference/upstream_tests.rs", "src/reference.rs")
    write("reference", [s for s in refs if len(s) < 400])

    plats = [s for s in strings("src/platform/upstream_tests.rs", "src/platform/mod.rs", "src/platform/matcher.rs") if len(s) < 200 and "\n" not in s]
    combos = ["\n".join(plats[i : i + 4]) for i in range(0, len(plats), 3)]
    write("platform", plats + combos)

    dockerfiles = [p.read_text() for p in ROOT.glob("examples/**/Dockerfile*") if "dockerignore" not in p.name]
    sources = ["src/build/plan_tests.rs", "src/build/instructions.rs", "src/build/syntax.rs", "src/build/exec.rs", "src/build/plan.rs", "tests/it/build.rs", "tests/it/sec_store.rs"]
    dockerfiles += [s for s in raw_strings(*sources) if re.search(r"(?im)^\s*FROM\s", s)]
    write("dockerfile", dockerfiles)

    archive_list, docs = archives()
    write("archive_load", archive_list)
    write("layer_extract", layers())

    json_docs = [s for s in raw_strings("src/oci/mod.rs", "src/oci/config.rs", "src/oci/changes.rs", "src/store/tests.rs", "tests/it/local.rs", "tests/it/manifest.rs") if s.lstrip().startswith(("{", "["))]
    json_docs += [s for s in strings("src/oci/mod.rs") if s.startswith("{")]
    write("oci_json", json_docs + docs)

    ignores = [(ROOT / "examples/busybox/Dockerfile.dockerignore").read_text()]
    ignores += strings("src/build/dockerignore.rs", "src/build/context.rs", "src/build/copy_tests.rs")
    write("dockerignore", ignores)

    bakes = [(ROOT / "examples/bake/manifold.yaml").read_text()]
    bakes += [s for s in raw_strings("src/manifest/bake/tests.rs", "tests/it/bake.rs", "src/manifest/bake/file.rs") if ":" in s]
    write("bake", bakes)

    challenges = [s for s in raw_strings("src/registry/auth.rs", "src/registry/transport.rs", "tests/it/sec_registry.rs", "tests/it/registry_harness.rs") if re.match(r"(?i)\s*(bearer|basic)", s)]
    challenges += [s for s in strings("src/registry/auth.rs", "tests/it/sec_registry.rs", "tests/it/registry_harness.rs") if re.match(r"(?i)\s*(bearer|basic)", s)]
    challenges += ['Bearer realm="https://auth.test/token",service="registry.test",scope="repository:a/b:pull"', 'Basic realm="r", Bearer realm="http://127.0.0.1:1/t"', 'Negotiate', 'bearer realm=x, error="insufficient_scope"', 'Bearer realm="a\\"b"']
    write("www_authenticate", challenges)


if __name__ == "__main__":
    main()
