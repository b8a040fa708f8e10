"""Derive the Go tool's JSON facts from its source, mechanically, into tests/compat/go_facts/.

zilliztech/milvus-backup writes its meta files and its `get` output with Go's
``encoding/json`` over the structs protoc-gen-go generated in ``core/proto/backuppb``. So the
JSON a message becomes is fixed by that generated code: the struct's field order is the key
order, each field's ``json:"name,omitempty"`` tag names the key and says whether a zero
value is left out, and the Go type decides the JSON type (int64 and enums are numbers,
[]byte is base64, a oneof is an interface keyed by the Go field name). This script reads
those facts, and the few others that shape the files, from a clone of the Go tool and
writes one JSON table per version. Run it again to refresh the tables; tests use the
committed tables and, when the clone is present, check that they are still what the
source says.

    python tests/compat/derive_go_facts.py [--repo GIT_DIR] [--check]

``--repo`` is a git directory of https://github.com/zilliztech/milvus-backup (default:
$MBACKUP_GO_TOOL_REPO, else /work/.mirror/zilliztech+milvus-backup/repo). Only ``git show``
and ``git rev-parse`` are used: nothing is built or run, and no network is needed.

What each table holds (see the README section of any table for the paths it came from):
- ``encoding``: the marshal calls found (json.Marshal / MarshalIndent / protojson) with
  their place, so the rules above are checked, not assumed;
- ``messages``: per message, its fields in order: json key, omitempty, json type, Go type,
  proto number/name/type, and the message or enum it refers to;
- ``enums``: value -> name;
- ``meta_files`` (targets only): each meta file, the builder that writes it, the fields a
  builder sets or clears, and the write order;
- ``get`` (targets only): what `get` prints (message, indent, fields copied from the backup);
- ``time_units``: for every time-like key, the unit of each value the tool assigns
  (``s``, ``ms``, ``ns``, ``tso``) and where; ``copy`` when it copies another field, ``param``
  when a setter stores its argument.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = "https://github.com/zilliztech/milvus-backup"
DEFAULT_REPO = "/work/.mirror/zilliztech+milvus-backup/repo"
OUT = Path(__file__).resolve().parent / "go_facts"

PB_GO = "core/proto/backuppb/backup.pb.go"
PROTO = "core/proto/backup.proto"

# Versions mbackup is compatible with (every fact), and older ones whose published REST
# responses tests/compat checks (tests/../shared/compat/go-tool-rest/INDEX.md names them).
TARGETS = {"HEAD": "HEAD", "v0.5.16": "v0.5.16"}
OBSERVED = {"v0.4.16": "v0.4.16", "v0.2.2": "v0.2.2", "2022-11-29": "a5fa980f7536dc344fb7476ae81d71b22b4b8c6b"}


# --------------------------------------------------------------------------------------
# git


class Repo:
    def __init__(self, git_dir: str) -> None:
        self.git_dir = git_dir

    def _git(self, *args: str) -> str:
        proc = subprocess.run(["git", f"--git-dir={self.git_dir}", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"git {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def commit(self, rev: str) -> str:
        return self._git("rev-parse", f"{rev}^{{commit}}").strip()

    def show(self, commit: str, path: str) -> str:
        return self._git("show", f"{commit}:{path}")

    def go_files(self, commit: str) -> list[str]:
        names = self._git("ls-tree", "-r", "--name-only", commit).splitlines()
        return [n for n in names if n.endswith(".go") and not n.endswith("_test.go") and not n.endswith(".pb.go")
                and not n.startswith(("build/", "vendor/")) and "/mocks/" not in n and not n.endswith("_mock.go")]


# --------------------------------------------------------------------------------------
# .pb.go: structs, tags, enums

_TYPE = re.compile(r"^type (\w+) (struct \{|int32$)", re.M)
_FIELD = re.compile(r"^\t(\w+)\s+(\S+)\s+`([^`]*)`")
_TAG = re.compile(r'(\w+):"([^"]*)"')
_ENUM_VALUE = re.compile(r"^\t(\w+)_(\w+)\s+\1\s*=\s*(-?\d+)$", re.M)

_SCALARS = {
    "string": "string", "bool": "boolean", "int32": "integer", "int64": "integer", "uint32": "integer",
    "uint64": "integer", "float32": "number", "float64": "number", "[]byte": "string(base64)",
}


def _json_type(go_type: str, enums: set[str], messages: set[str]) -> dict:
    """How encoding/json writes a Go field type."""
    if go_type in _SCALARS:
        return {"json_type": _SCALARS[go_type]}
    if go_type in enums:
        return {"json_type": "integer", "enum": go_type}
    if go_type.startswith("*") and go_type[1:] in messages:
        return {"json_type": "object", "message": go_type[1:]}
    if go_type.startswith("[]"):
        return {"json_type": "array", "items": {"go_type": go_type[2:], **_json_type(go_type[2:], enums, messages)}}
    m = re.fullmatch(r"map\[(\w+)\](.+)", go_type)
    if m:
        return {"json_type": "object(map)", "keys": _SCALARS[m.group(1)], "values": {"go_type": m.group(2), **_json_type(m.group(2), enums, messages)}}
    if go_type.startswith("is") and go_type.endswith("_" + go_type.split("_")[-1]):
        return {"json_type": "object(oneof)"}
    if go_type.startswith("*_struct."):
        return {"json_type": "any", "external": go_type[1:]}
    raise SystemExit(f"unknown Go type {go_type!r}: teach derive_go_facts.py how encoding/json writes it")


def parse_pb_go(text: str) -> tuple[dict, dict]:
    enums = {m.group(1) for m in _TYPE.finditer(text) if m.group(2) == "int32"}
    structs: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
    for m in _TYPE.finditer(text):
        if m.group(2) == "int32":
            continue
        body = text[m.end():text.index("\n}\n", m.end())]
        fields = []
        for line in body.splitlines():
            f = _FIELD.match(line)
            if f:
                fields.append((f.group(1), f.group(2), dict(_TAG.findall(f.group(3)))))
        structs[m.group(1)] = fields
    oneof_variants = {name for name, fields in structs.items()
                      if len(fields) == 1 and fields[0][2].get("protobuf", "").endswith(",oneof")}
    messages = {name for name, fields in structs.items() if name not in oneof_variants
                and any("protobuf" in t or "protobuf_oneof" in t for _, _, t in fields)}

    out: dict[str, dict] = {}
    for name in sorted(messages, key=lambda n: text.index(f"type {n} struct")):
        fields = []
        for go_name, go_type, tags in structs[name]:
            json_tag = tags.get("json")
            if json_tag == "-":
                continue
            if "protobuf_oneof" in tags:  # no json tag: encoding/json keys it by the Go name
                variants = {}
                for v in sorted(n for n in oneof_variants if n.startswith(name + "_")):
                    vname, vtype, vtags = structs[v][0]
                    variants[vname] = {"go_type": vtype, **_json_type(vtype, enums, messages),
                                       "proto": _proto_tag(vtags["protobuf"])}
                fields.append({"json": go_name, "omitempty": False, "go": go_name, "go_type": "interface",
                               "json_type": "object(oneof)", "oneof": tags["protobuf_oneof"],
                               "variants": variants, "go_can_decode": False})
                continue
            key, _, opts = (json_tag or go_name).partition(",")
            fields.append({"json": key, "omitempty": "omitempty" in opts.split(","), "go": go_name,
                           "go_type": go_type, **_json_type(go_type, enums, messages),
                           "proto": _proto_tag(tags["protobuf"])})
        out[name] = {"fields": fields}
    enum_values: dict[str, dict[str, str]] = {e: {} for e in sorted(enums, key=lambda n: text.index(f"type {n} int32"))}
    for m in _ENUM_VALUE.finditer(text):
        if m.group(1) in enum_values:
            enum_values[m.group(1)][m.group(3)] = m.group(2)
    return out, enum_values


def _proto_tag(tag: str) -> dict:
    parts = tag.split(",")
    out = {"number": int(parts[1]), "label": parts[2]}
    for p in parts[3:]:
        k, _, v = p.partition("=")
        if k in ("name", "json", "enum"):
            out[k] = v
    return out


# --------------------------------------------------------------------------------------
# .proto: the declared proto types, cross-checked against the .pb.go tags

_PROTO_FIELD = re.compile(r"^\s*(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)")
_PROTO_MAP = re.compile(r"^\s*map\s*<\s*(\w+)\s*,\s*([\w.]+)\s*>\s*(\w+)\s*=\s*(\d+)")


def parse_proto(text: str) -> dict[str, dict[int, str]]:
    text = re.sub(r"//[^\n]*", "", text)
    out: dict[str, dict[int, str]] = {}
    for m in re.finditer(r"\bmessage\s+(\w+)\s*\{", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        fields = {}
        for line in text[m.end():i - 1].splitlines():
            mm = _PROTO_MAP.match(line)
            if mm:
                fields[int(mm.group(4))] = f"map<{mm.group(1)}, {mm.group(2)}>"
                continue
            f = _PROTO_FIELD.match(line)
            if f and f.group(2) not in ("message", "oneof", "enum", "option", "reserved"):
                fields[int(f.group(4))] = ("repeated " if f.group(1) else "") + f.group(2)
        out[m.group(1)] = fields
    return out


def attach_proto_types(messages: dict, proto: dict[str, dict[int, str]]) -> None:
    for name, msg in messages.items():
        declared = proto.get(name)
        if declared is None:
            raise SystemExit(f"{name} is in {PB_GO} but not in {PROTO}")
        for f in msg["fields"]:
            for p in ([f["proto"]] if "proto" in f else [v["proto"] for v in f["variants"].values()]):
                if p["number"] not in declared:
                    raise SystemExit(f"{name}: field {p['number']} is not declared in {PROTO}")
                p["type"] = declared[p["number"]]


# --------------------------------------------------------------------------------------
# Go sources: how meta is marshalled, what each meta file holds, time units


def _lineno(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _block(text: str, open_brace: int) -> str:
    depth, i = 0, open_brace
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[open_brace + 1:i - 1]


def _func(text: str, name: str) -> str:
    m = re.search(rf"^func (?:\([^)]*\) )?{name}\(.*\{{$", text, re.M)
    if not m:
        raise SystemExit(f"function {name} not found")
    return _block(text, m.end() - 1)


def _literal_keys(body: str, message: str) -> list[str]:
    m = re.search(rf"backuppb\.{message}\{{", body)
    if not m:
        raise SystemExit(f"no backuppb.{message} literal")
    return re.findall(r"^\s*(\w+):", _block(body, m.end() - 1), re.M)


def find_encoders(repo: Repo, commit: str, files: list[str]) -> list[dict]:
    found = []
    for path in files:
        text = repo.show(commit, path)
        for m in re.finditer(r"\b(json\.Marshal(?:Indent)?|protojson\.Marshal\w*|jsonpb\.Marshal\w*)\(", text):
            found.append({"call": m.group(1), "at": f"{path}:{_lineno(text, m.start())}"})
    return found


def meta_files(repo: Repo, commit: str, messages: dict) -> dict:
    """The meta files the backup task writes, in order, and what each builder puts in them."""
    task = repo.show(commit, "core/backup/task.go")
    builder = repo.show(commit, "core/backup/meta_builder.go")
    mpath = repo.show(commit, "internal/storage/mpath/path.go")
    names = dict(re.findall(r"^\t(\w+)\s+MetaType = \"([\w.]+)\"", mpath, re.M))
    order = re.findall(r"Type: mpath\.(\w+), Fn: t\.metaBuilder\.(\w+)", _func(task, "writeMeta"))
    if not order:
        raise SystemExit("writeMeta: no meta entries found")
    by_go_name = {}
    for msg, spec in messages.items():
        for f in spec["fields"]:
            by_go_name.setdefault(f["go"], set()).add(msg)
    out = []
    for mtype, fn in order:
        body = _func(builder, fn)
        top = re.search(r"backuppb\.(\w+)\{", body)
        entry = {"file": names[mtype], "builder": f"core/backup/meta_builder.go:{fn}",
                 "message": top.group(1) if top else "BackupInfo"}
        if re.search(r"json\.Marshal\(builder\.data\)", body):
            entry["content"] = "the whole BackupInfo tree"
        elif entry["message"] == "BackupInfo":
            entry["only"] = [_json_key(messages, "BackupInfo", k) for k in _literal_keys(body, "BackupInfo")]
        cleared = re.findall(r"\b\w+\.(\w+) = nil", body)
        if cleared:
            entry["cleared"] = {}
            for go_name in cleared:
                owners = by_go_name.get(go_name, set()) & {"CollectionBackupInfo", "PartitionBackupInfo", "SegmentBackupInfo"}
                if len(owners) != 1:
                    raise SystemExit(f"{fn}: cannot tell which message {go_name} belongs to ({owners})")
                owner = owners.pop()
                entry["cleared"].setdefault(owner, []).append(_json_key(messages, owner, go_name))
        out.append(entry)
    return {"write_order": [e["file"] for e in out], "files": out}


def _json_key(messages: dict, message: str, go_name: str) -> str:
    for f in messages[message]["fields"]:
        if f["go"] == go_name:
            return f["json"]
    raise SystemExit(f"{message} has no field {go_name}")


def get_command(repo: Repo, commit: str, messages: dict) -> dict:
    cmd = repo.show(commit, "cmd/get/get.go")
    m = re.search(r"json\.MarshalIndent\((\w+), \"(.*?)\", \"(.*?)\"\)", cmd)
    call = re.search(r"(\w+) := pbconv\.(\w+)\(nil, \w+, \w+\)", cmd)
    if not (m and call):
        raise SystemExit("cmd/get/get.go: expected pbconv.NewBackupInfoBrief(nil, ...) and json.MarshalIndent")
    conv = repo.show(commit, "internal/pbconv/pbconv.go")
    body = _func(conv, call.group(2))
    from_backup = _block(body, body.index("if backup != nil {") + len("if backup != nil {") - 1)
    top = {}
    for dst, src in re.findall(r"brief\.(\w+) = backup\.Get(\w+)\(\)", from_backup):
        top[_json_key(messages, "BackupInfoBrief", dst)] = _json_key(messages, "BackupInfo", src)
    always = re.search(r"backuppb\.BackupInfoBrief\{(.*?)\}", body).group(1)
    coll_fn = re.search(r"= (\w+)\(backup\.GetCollectionBackups\(\)\)", from_backup).group(1)
    coll = {}
    for dst, src in re.findall(r"^\s*(\w+):\s+coll\.Get(\w+)\(\),", _func(conv, coll_fn), re.M):
        coll[_json_key(messages, "CollectionBackupInfoBrief", dst)] = _json_key(messages, "CollectionBackupInfo", src)
    return {
        "message": "BackupInfoBrief",
        "marshal": "json.MarshalIndent",
        "prefix": m.group(2),
        "indent": m.group(3),
        "from_backup": top,
        "collection_brief_from": coll,
        "set_without_backup": [_json_key(messages, "BackupInfoBrief", k.split(":")[0].strip()) for k in always.split(",") if k.strip()],
        "at": ["cmd/get/get.go", f"internal/pbconv/pbconv.go:{call.group(2)}"],
    }


_UNITS = [
    (re.compile(r"UnixNano\(\)\s*/\s*int64\(time\.Millisecond\)|UnixMilli\(\)"), "ms"),
    (re.compile(r"UnixNano\(\)"), "ns"),
    (re.compile(r"\.Unix\(\)"), "s"),
    (re.compile(r"ComposeTS\(|GetTimestamp\(\)|Tso\b"), "tso"),
    (re.compile(r"\.Get\w+\(\)|^\w+\.\w+$"), "copy"),
    (re.compile(r"^\w+$"), "param"),  # a setter's argument: its callers decide
]


def _unit(expr: str) -> str:
    for pattern, unit in _UNITS:
        if pattern.search(expr):
            return unit
    return "other"


def time_units(repo: Repo, commit: str, files: list[str], messages: dict) -> dict:
    """Every value the tool assigns to a time-like field of a backuppb message, by unit."""
    timed = {(msg, f["go"]): f["json"] for msg, spec in messages.items() for f in spec["fields"]
             if re.search(r"time", f["json"], re.I) and f["json_type"] == "integer"}
    found: dict[str, list[dict]] = {}

    def note(msg: str, go_field: str, expr: str, where: str) -> None:
        key = timed.get((msg, go_field))
        if key:
            found.setdefault(f"{msg}.{key}", []).append({"unit": _unit(expr.strip().rstrip(",")), "at": where,
                                                          "expr": expr.strip().rstrip(",")})

    for path in files:
        text = repo.show(commit, path)
        if "backuppb." not in text:
            continue
        for m in re.finditer(r"backuppb\.(\w+)\{", text):
            if m.group(1) not in messages:
                continue
            body = _block(text, m.end() - 1)
            for f in re.finditer(r"^\s*(\w+):\s*(.+)$", body, re.M):
                note(m.group(1), f.group(1), f.group(2), f"{path}:{_lineno(text, m.end() + f.start())}")
        for a in re.finditer(r"^\s*(\w+)\.(\w+)\s*=\s*(.+)$", text, re.M):
            var = a.group(1)
            decls = list(re.finditer(rf"\b{var}\s*:?=\s*&?backuppb\.(\w+)\{{|\b{var}\s+\*?backuppb\.(\w+)\b", text[:a.start()]))
            if decls:
                msg = decls[-1].group(1) or decls[-1].group(2)
                note(msg, a.group(2), a.group(3), f"{path}:{_lineno(text, a.start())}")
    return {k: sorted(v, key=lambda x: x["at"]) for k, v in sorted(found.items())}


# --------------------------------------------------------------------------------------


def derive(repo: Repo, label: str, rev: str, target: bool) -> dict:
    commit = repo.commit(rev)
    messages, enums = parse_pb_go(repo.show(commit, PB_GO))
    attach_proto_types(messages, parse_proto(repo.show(commit, PROTO)))
    files = repo.go_files(commit)
    facts = {
        "README": (
            f"Derived by tests/compat/derive_go_facts.py from {REPOSITORY} at {label} (commit {commit}): "
            f"messages and enums from {PB_GO} (struct field order and json tags) and {PROTO} (proto types); "
            "encoding from the marshal calls in its Go sources; meta files from core/backup/task.go writeMeta, "
            "core/backup/meta_builder.go and internal/storage/mpath/path.go; get from cmd/get/get.go and "
            "internal/pbconv/pbconv.go; time units from every backuppb literal and field assignment. Do not edit: re-run the script."
        ),
        "repository": REPOSITORY,
        "version": label,
        "commit": commit,
        "paths": [PB_GO, PROTO],
        "encoding": {
            "rules": "Go encoding/json over the generated structs: keys = json tags in struct order, omitempty "
                     "drops 0/false/\"\"/empty slices and maps/nil pointers, enums and 64-bit ints as JSON "
                     "numbers, maps sorted by key, a oneof is an interface keyed by its Go field name",
            "calls": find_encoders(repo, commit, files),
        },
        "messages": messages,
        "enums": enums,
        "time_units": time_units(repo, commit, files, messages),
    }
    if target:
        facts["meta_files"] = meta_files(repo, commit, messages)
        facts["get"] = get_command(repo, commit, messages)
    if any(c["call"].startswith(("protojson", "jsonpb")) and ("meta" in c["at"] or "server" in c["at"])
           for c in facts["encoding"]["calls"]):
        raise SystemExit(f"{label}: a protojson marshal writes meta or REST output: the encoding rules above do not hold")
    return facts


def render(facts: dict) -> str:
    return json.dumps(facts, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=os.environ.get("MBACKUP_GO_TOOL_REPO", DEFAULT_REPO))
    ap.add_argument("--check", action="store_true", help="fail if a committed table differs from the source")
    args = ap.parse_args(argv)
    repo = Repo(args.repo)
    stale = []
    OUT.mkdir(exist_ok=True)
    for versions, target in ((TARGETS, True), (OBSERVED, False)):
        for label, rev in versions.items():
            text = render(derive(repo, label, rev, target))
            path = OUT / f"{label}.json"
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.write_text(text)
                print(f"wrote {path} ({len(text):,} bytes)")
    if stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
