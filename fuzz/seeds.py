#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/TARGET/.

Seeds: the string literals of each parser's unit tests, about 50 real
syslog lines of each loghub sample (OpenSSH, Linux; raw, behind a `<13>`
PRI and rewritten as RFC 5424), the CloudTrail records, and a few lines
built from those. The corpora are not committed (see .gitignore); run

    python3 fuzz/seeds.py

from the repository root (or anywhere: paths are relative to this file).
The shared data lives beside the project in ../shared/data (or
$TRIPLINE_DATA).
"""

import hashlib
import json
import os
import re
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SRC = ROOT / "ingest" / "src"
DATA = Path(os.environ.get("TRIPLINE_DATA", ROOT.parent / "shared" / "data"))
PER_FILE = 50

# Format::ALL order: the first byte of a parse_line input picks the format.
FORMATS = ["json", "syslog", "cef", "leef", "logfmt", "clf", "cloudtrail", "k8s_audit", "raw", "auto"]
SEL = {name: i for i, name in enumerate(FORMATS)}


# ---------------------------------------------------------------- literals

ESC = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", '"': b'"', "'": b"'", "0": b"\0"}


def unescape(body: str, is_bytes: bool) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        e = body[i + 1]
        if e in ESC:
            out += ESC[e]
            i += 2
        elif e == "x":
            v = int(body[i + 2 : i + 4], 16)
            out += bytes([v]) if is_bytes else chr(v).encode()
            i += 4
        elif e == "u":
            end = body.index("}", i)
            out += chr(int(body[i + 3 : end], 16)).encode()
            i = end + 1
        elif e == "\n":  # line continuation: skip the newline and indentation
            i += 2
            while i < len(body) and body[i] in " \t\n":
                i += 1
        else:
            out += b"\\" + e.encode()
            i += 2
    return bytes(out)


LITERAL = re.compile(
    r'(?P<b>b?)r(?P<h>#*)"(?P<raw>.*?)"(?P=h)'  # raw strings
    r'|(?P<b2>b?)"(?P<cooked>(?:[^"\\]|\\.|\\\n)*)"',
    re.S,
)


def literals(path: Path, whole: bool = False):
    """The string literals of the file's test module (or of the whole file),
    decoded."""
    text = path.read_text()
    if not whole:
        at = text.find("#[cfg(test)]")
        text = text[at:] if at >= 0 else ""
    found = []
    for m in LITERAL.finditer(text):
        if m.group("raw") is not None:
            v = m.group("raw").encode()
        else:
            v = unescape(m.group("cooked"), bool(m.group("b2")))
        if len(v) >= 3:
            found.append(v)
    return found


# ---------------------------------------------------------------- data

def lines(name: str):
    p = DATA / "loghub" / name
    if not p.exists():
        print(f"skipped: no {p}", file=sys.stderr)
        return []
    return [l for l in p.read_bytes().split(b"\n") if l.strip()]


def shape(line: bytes) -> bytes:
    """The line with its numbers and header removed, to pick varied lines."""
    body = line.split(b": ", 1)[-1]
    return re.sub(rb"[0-9.]+", b"N", body)[:32]


def sample(all_lines, n=PER_FILE):
    """`n` lines: one of each message shape first, then evenly spread."""
    picked, seen = [], set()
    for l in all_lines:
        s = shape(l)
        if s not in seen:
            seen.add(s)
            picked.append(l)
    step = max(1, len(all_lines) // n)
    for l in all_lines[::step]:
        if len(picked) >= n:
            break
        if l not in picked:
            picked.append(l)
    return picked[:n]


BSD = re.compile(rb"^(\w{3}) +(\d{1,2}) (\d\d:\d\d:\d\d) (\S+) ([^:\[ ]+)(?:\[(\d+)\])?: ?(.*)$", re.S)
MONTH = {m: i + 1 for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}


def to_5424(line: bytes, pri: int, i: int) -> bytes:
    m = BSD.match(line)
    if not m:
        return b"<%d>1 - - - - - - " % pri + line
    mon, day, clock, host, tag, pid, msg = m.groups()
    ts = b"2025-%02d-%02dT%s%s" % (MONTH.get(mon, 1), int(day), clock, [b"Z", b".003Z", b"+01:00", b".000003-07:00"][i % 4])
    sd = [b"-", b'[origin ip="10.0.0.1"]', b'[meta@32473 seq="%d" q="a\\"b\\]c"][x@1]' % i][i % 3]
    tail = b" \xef\xbb\xbf" + msg if i % 5 == 0 else b" " + msg
    return b"<%d>1 %s %s %s %s - %s%s" % (pri, ts, host, tag, pid or b"-", sd, tail)


def message_of(line: bytes) -> bytes:
    m = BSD.match(line)
    return m.group(7) if m else line


def cloudtrail():
    out = []
    for p in sorted((DATA / "cloudtrail").glob("*.json")):
        out += [l for l in p.read_bytes().split(b"\n") if l.strip()]
    return out


SIGMA_FILES = 300
SIGMA_MAX = 4096  # the campaign's -max_len
DETECT = ROOT / "detect"
HEADER = b"title: t\nid: r\nlogsource: {product: test}\ndetection:\n"
MODIFIERS = re.compile(rb"\|[a-z0-9|]+:")
CONDITION = re.compile(rb"^\s*condition:\s*(.+)$", re.M)


def sigma_rules():
    """SIGMA_FILES SigmaHQ rules of at most SIGMA_MAX bytes: one of each
    (directory, modifiers, condition shape) first, then evenly spread."""
    root = DATA / "sigma"
    if not root.exists():
        print(f"skipped: no {root}", file=sys.stderr)
        return []
    files = [p.read_bytes() for p in sorted(root.rglob("*.yml"))]
    files = [f for f in files if len(f) <= SIGMA_MAX]
    picked, seen = [], set()
    for f in files:
        conds = b" ".join(CONDITION.findall(f))
        key = (frozenset(MODIFIERS.findall(f)), re.sub(rb"[\w*]+", b"x", conds))
        if key not in seen:
            seen.add(key)
            picked.append(f)
    step = max(1, len(files) // SIGMA_FILES)
    for f in files[::step]:
        if len(picked) >= SIGMA_FILES:
            break
        if f not in picked:
            picked.append(f)
    return picked[:SIGMA_FILES]


def sigma_conditions(rules):
    """The condition lines of the rules, unquoted, and a few more."""
    out = []
    for f in rules:
        for c in CONDITION.findall(f):
            c = c.strip()
            if len(c) >= 2 and c[:1] in b"'\"" and c[-1:] == c[:1]:
                c = c[1:-1]
            out.append(c)
    out += [b"not(a)", b"any of sel_*", b"all of them and not 1 of filter_*", b"((a))  or\t(b and\nc)",
            b"a | count() > 5", b"sel and not\n  filter", b"1 of *", b"all of sel*_x*y"]
    return out


# ---------------------------------------------------------------- writing

def write(target: str, seeds):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for s in seeds:
        name = d / hashlib.sha1(s).hexdigest()
        if not name.exists():
            name.write_bytes(s)
            n += 1
    print(f"{target}: {n} new seeds, {len(list(d.iterdir()))} in corpus")


def main():
    ssh = sample(lines("OpenSSH_2k.log"))
    linux = sample(lines("Linux_2k.log"))
    syslog = ssh + linux
    pri = [b"<13>" + l for l in syslog[::2]] + [b"<38>" + l for l in syslog[1::5]] + [b"<191>" + syslog[0]]
    rfc5424 = [to_5424(l, [13, 34, 86, 165, 0, 191][i % 6], i) for i, l in enumerate(syslog)]
    rfc3339 = [b"2026-06-15T13:04:05.123456+01:00 " + l.split(b" ", 3)[3] for l in syslog[:10]]
    lit = {f: literals(SRC / f) for f in [
        "syslog/rfc5424.rs", "syslog/rfc3164.rs", "syslog/octet.rs", "syslog/sshd.rs",
        "cef.rs", "leef.rs", "logfmt.rs", "clf.rs", "format.rs",
    ]}
    ct = cloudtrail()

    write("rfc5424", lit["syslog/rfc5424.rs"] + rfc5424)

    # rfc3164: a leading NUL and two bytes move the ingest time (see the target).
    moved = []
    for hours, line in [(0, b"Dec 31 23:59:00 h t: m"), (24 * 7, b"Jan  1 00:00:30 h t: m"),
                        (-24 * 680, b"Feb 29 10:00:00 h t: m"), (24 * 800, b"Feb 29 10:00:00 h t: m"),
                        (-24 * 3, b"Dec 31 23:58:00 h sshd[1]: x")]:
        moved.append(b"\0" + (hours + 32768).to_bytes(2, "little") + line)
    write("rfc3164", lit["syslog/rfc3164.rs"] + syslog + pri + rfc3339 + moved)

    # The framer: streams of line frames, octet-counted frames, and both.
    def counted(msgs):
        return b"".join(b"%d %s" % (len(m), m) for m in msgs)

    streams = list(lit["syslog/octet.rs"])
    for k in range(0, 40, 4):
        group = (pri + rfc5424)[k : k + 4]
        streams += [b"\n".join(group) + b"\n", b"\r\n".join(group) + b"\r\n", counted(group),
                    counted(group[:2]) + b"\n".join(group[2:]) + b"\n", counted(group)[:-5]]
    streams += [b"65536 " + b"a" * 16, b"64 " + b"x" * 64 + b"65 " + b"y" * 65, b"a" * 70 + b"\n",
                b"00000000000000000000000000000000000001 a", b"0 0 0 \n\n\n"]
    # At the production limit (64 KiB): a frame just at it, one just over,
    # and a line just over (used by the -max_len=70000 runs).
    big = (pri + rfc5424)[0]
    streams += [b"65536 " + (big * 700)[:65536] + b"\n" + big + b"\n",
                b"65537 " + (big * 700)[:65537],
                (b"a" * 65537) + b"\n" + big + b"\n"]
    write("octet_framer", streams)

    write("sshd", lit["syslog/sshd.rs"] + [message_of(l) for l in syslog])

    cef = lit["cef.rs"] + [l for l in lit["format.rs"] if b"CEF:" in l]
    cef += [b"CEF:" + c.split(b"CEF:", 1)[1] for c in cef if b"CEF:" in c and not c.startswith(b"CEF:")]
    write("cef", cef)

    leef = lit["leef.rs"] + [l for l in lit["format.rs"] if b"LEEF:" in l]
    write("leef", leef)

    logfmt = lit["logfmt.rs"] + [l for l in lit["format.rs"] if b"=" in l and not l.startswith(b"{")]
    for rec in ct[:10]:
        obj = json.loads(rec)
        pairs = []
        for k, v in obj.items():
            if isinstance(v, (str, int, float, bool)):
                v = str(v)
                pairs.append(f'{k}="{v}"' if (" " in v or not v) else f"{k}={v}")
        logfmt.append(" ".join(pairs).encode())
    write("logfmt", logfmt)

    # Access logs: the tests' lines, and lines built from the OpenStack
    # sample's requests (its own lines are not CLF).
    clf = lit["clf.rs"] + [l for l in lit["format.rs"] if b"] \"" in l]
    for l in lines("OpenStack_2k.log")[:400:40]:
        m = re.search(rb'(\d+\.\d+\.\d+\.\d+) "([^"]*)" status: (\d+) len: (\d+) time: ([\d.]+)', l)
        if m:
            ip, req, status, size, t = m.groups()
            clf.append(b'%s - - [16/May/2017:00:00:00 +0000] "%s" %s %s "-" "python-novaclient" %s' % (ip, req, status, size, t))
            clf.append(b'nova.example:8774 %s - admin [16/May/2017:00:00:01 -0700] "%s" %s - rt=%s' % (ip, req, status, t))
    write("clf", clf)

    # The dispatcher: selector byte + line, each line under its own format,
    # under auto, and some under raw and a wrong format.
    pl = []

    def add(fmt, line):
        pl.append(bytes([SEL[fmt]]) + line)

    for l in lit["format.rs"]:
        add("auto", l)
    for l in ct:
        add("cloudtrail", l)
    for l in lit["format.rs"]:
        if b"audit.k8s.io" in l:
            add("k8s_audit", l)
    for l in ct[::4]:
        add("auto", l)
        add("json", l)
        add("k8s_audit", l)
    for l in syslog[::3] + pri[::3] + rfc5424[::3]:
        add("syslog", l)
        add("auto", l)
    for l in cef:
        add("cef", l)
        add("auto", l)
    for l in leef:
        add("leef", l)
    for l in logfmt:
        add("logfmt", l)
    for l in clf:
        add("clf", l)
        add("auto", l)
    add("raw", syslog[0])
    add("cef", pri[0])
    add("leef", pri[1])
    add("cef", b"<134>Feb 12 10:01:02 fw01 " + cef[0])
    add("leef", b"<13>2026-06-15T13:04:05Z fw01 " + leef[0])
    add("auto", b"<13>Jan  2 10:00:00 gw app: " + ct[0])
    pl.append(bytes([250]) + syslog[0] * 5)  # selector 250: a 256-byte line limit
    # Long lines (for the -max_len=70000 runs).
    add("auto", b"{\"Records\":[" + b",".join(ct[:60]) + b"]}")
    add("syslog", pri[0] + b" " + b"x" * 65000)
    add("cef", cef[0] + b" cs1=" + b"a " * 30000)
    add("logfmt", b"k=v " * 16000)
    write("parse_line", pl)

    # Sigma: SigmaHQ rules, the detect tests' YAML (rules, correlations,
    # filters; their detections behind a header), a multi-document file.
    rules = sigma_rules()
    yaml = [l for f in ["src/rule.rs", "src/correlation.rs"] for l in literals(DETECT / f)]
    yaml += [l for f in ["tests/rules.rs", "tests/correlation.rs"] for l in literals(DETECT / f, whole=True)]
    tests = [l for l in yaml if b"title:" in l or b"detection:" in l or b"correlation:" in l]
    tests += [HEADER + l for l in yaml if l.lstrip().startswith(b"sel") and b"condition:" in l]
    multi = [b"---\n".join(rules[i : i + 3]) for i in range(0, min(len(rules), 30), 3)]
    write("sigma_rule", rules + tests + multi)
    write("sigma_condition", sigma_conditions(rules) + literals(DETECT / "src" / "condition.rs"))


if __name__ == "__main__":
    main()
