#!/usr/bin/env python3
"""Normalise `wg` output so two implementations can be compared.

    wgnorm.py MODE IFNAME [--mask-port] < output > normalised
    wgnorm.py --batch < jobs     (one job a line: MODE IFNAME MASK IN OUT,
                                  MASK being 1 or 0; saves interpreter starts)

What legitimately differs between two correct implementations is masked:
  * the interface name (each device has its own);
  * the order of peers (wireguard-go walks a Go map: random order) and the
    order of a peer's allowed IPs (a trie walk; any order is equally valid);
  * with --mask-port, the device's own listening port (when it was random).
MODE "blocks": `wg show IF` / `wg showconf IF` (blank-line separated sections,
the first one is the interface and stays first). MODE "lines": everything
else (dump and single-field output); lines are sorted.
"""
import re
import sys

CIDR_LIST = re.compile(r"^[0-9a-fA-F:.]+/\d+([, ]+[0-9a-fA-F:.]+/\d+)*$")


def sort_list(text: str) -> str:
    """Sorts a list of prefixes, keeping the separator style."""
    stripped = text.strip()
    if not CIDR_LIST.match(stripped):
        return text
    sep = ", " if ", " in stripped else ("," if "," in stripped else " ")
    items = [x for x in re.split(r"[, ]+", stripped) if x]
    return text.replace(stripped, sep.join(sorted(items)))


def norm_line(line: str, mask_port: bool) -> str:
    m = re.match(r"^(\s*allowed ips: )(.*)$", line)
    if m:
        return m.group(1) + sort_list(m.group(2))
    m = re.match(r"^(AllowedIPs = )(.*)$", line)
    if m:
        return m.group(1) + sort_list(m.group(2))
    if mask_port:
        line = re.sub(r"^(\s*listening port: )\d+$", r"\1PORT", line)
        line = re.sub(r"^(ListenPort = )\d+$", r"\1PORT", line)
    if "\t" in line:
        fields = [sort_list(f) for f in line.split("\t")]
        # `wg show IF dump`, interface line: private, public, port, fwmark.
        if mask_port and len(fields) == 4 and fields[2].isdigit():
            fields[2] = "PORT"
        # `wg show all dump` prefixes the interface name: 5 fields.
        if mask_port and len(fields) == 5 and fields[3].isdigit():
            fields[3] = "PORT"
        line = "\t".join(fields)
    return line


def main() -> int:
    if sys.argv[1:] == ["--batch"]:
        for job in sys.stdin.read().splitlines():
            mode, ifname, mask, src, dst = job.split()
            with open(src) as f:
                text = f.read()
            with open(dst, "w") as f:
                f.write(normalise(text, mode, ifname, mask == "1"))
        return 0
    if len(sys.argv) < 3 or sys.argv[1] not in ("blocks", "lines"):
        print(__doc__, file=sys.stderr)
        return 64
    mode, ifname = sys.argv[1], sys.argv[2]
    mask_port = "--mask-port" in sys.argv[3:]
    sys.stdout.write(normalise(sys.stdin.read(), mode, ifname, mask_port))
    return 0


def normalise(text: str, mode: str, ifname: str, mask_port: bool) -> str:
    text = text.replace(ifname, "IFNAME")
    lines = [norm_line(l, mask_port) for l in text.splitlines()]
    # The "exit=N" line the test appends stays last.
    tail = [l for l in lines if l.startswith("exit=")]
    lines = [l for l in lines if not l.startswith("exit=")]
    if mode == "lines":
        out = sorted(lines)
    else:
        blocks, cur = [], []
        for l in lines:
            if l.strip() == "":
                if cur:
                    blocks.append(cur)
                cur = []
            else:
                cur.append(l)
        if cur:
            blocks.append(cur)
        head = blocks[:1]
        rest = sorted(blocks[1:], key=lambda b: "\n".join(b))
        out = []
        for b in head + rest:
            out.extend(b)
            out.append("")
    out += tail
    return "\n".join(out).strip("\n") + "\n"


if __name__ == "__main__":
    sys.exit(main())
