"""Phases of idle pings from a tracefs dump (see idle-rtt-phases.sh).

Walks each ping from its sendto (syscall 44) to the recvmsg (47) that
returns the reply and finds, in order: the first syscall exit of a thread
of end A (woken by the TUN), A's UDP send, B's first syscall exit (woken by
the datagram), B's TUN write (syscall 1), B's reply send, A's next wake,
A's TUN write. A UDP send is sendto/sendmsg/sendmmsg (44/46/307).
Then, for each direction, how the send woke the other end (see
wake_placement).
"""
import re
import statistics as st
import sys

LINE = re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+): (.*)$')
SEND = ('NR 44 ', 'NR 46 ', 'NR 307 ')
PHASES = ['A wakes', 'A sends', 'B wakes', 'B writes', 'B sends', 'A wakes', 'A writes', 'reply']


def main(trace, tids_a, tids_b, rtt_file):
    a = set(open(tids_a).read().split())
    b = set(open(tids_b).read().split())
    ev = []
    for line in open(trace):
        m = LINE.match(line)
        if m:
            ev.append((float(m.group(4)) * 1e6, m.group(1), m.group(2), m.group(5), m.group(6)))
    steps = [
        lambda comm, tid, kind, rest: tid in a and kind == 'sys_exit',
        lambda comm, tid, kind, rest: tid in a and kind == 'sys_enter' and rest.startswith(SEND),
        lambda comm, tid, kind, rest: tid in b and kind == 'sys_exit',
        lambda comm, tid, kind, rest: tid in b and kind == 'sys_enter' and rest.startswith('NR 1 '),
        lambda comm, tid, kind, rest: tid in b and kind == 'sys_enter' and rest.startswith(SEND),
        lambda comm, tid, kind, rest: tid in a and kind == 'sys_exit' and not rest.startswith(SEND),
        lambda comm, tid, kind, rest: tid in a and kind == 'sys_enter' and rest.startswith('NR 1 '),
        lambda comm, tid, kind, rest: comm == 'ping' and kind == 'sys_exit'
        and rest.startswith('NR 47 ') and not rest.endswith('= -11'),
    ]
    pings = []
    i = 0
    while i < len(ev):
        t0, comm, tid, kind, rest = ev[i]
        if comm == 'ping' and kind == 'sys_enter' and rest.startswith('NR 44 '):
            times, j = [], i + 1
            while j < len(ev) and len(times) < len(steps) and ev[j][0] - t0 < 20000:
                t, c, d, k, r = ev[j]
                if steps[len(times)](c, d, k, r):
                    times.append(t)
                j += 1
            if len(times) == len(steps):
                pings.append([t0] + times)
                i = j
                continue
        i += 1
    if not pings:
        print('  no complete ping found in the trace')
        return
    print(f'  {len(pings)} traced pings; median phase times (us, traced):')
    prev = 'ping sends'
    for k, name in enumerate(PHASES):
        d = sorted(p[k + 1] - p[k] for p in pings)
        print(f'    {prev:>10} -> {name:9} p25 {d[len(d) // 4]:6.1f}  med {st.median(d):6.1f}')
        prev = name
    print(f'    traced RTT median {st.median(p[-1] - p[0] for p in pings):.1f}')
    wake_placement(ev, a, b)
    rtt = sorted(float(x) * 1000 for x in open(rtt_file) if x.strip())
    if rtt:
        q = lambda f: rtt[int(f * (len(rtt) - 1))]
        print(f'  untraced RTT (us): n {len(rtt)} mean {sum(rtt) / len(rtt):.0f} '
              f'p10 {q(.1):.0f} p50 {q(.5):.0f} p90 {q(.9):.0f}')


def wake_placement(ev, a, b):
    """Where each end's UDP send woke the other end's thread: in the
    sender's own syscall (the kernel delivers the datagram in the sender's
    context; the woken thread then runs on the sender's CPU), or on the
    other CPU, which is idle and must first be woken by an IPI (on KVM, a
    halted vCPU: tens of µs). The scheduler puts the woken thread on the CPU
    it last ran on when that one is idle, so this is where the threads
    happened to sleep."""
    pid = re.compile(r'pid=(\d+)')
    for name, src, dst in (('A -> B', a, b), ('B -> A', b, a)):
        kinds = {}
        i = 0
        while i < len(ev):
            t, comm, tid, kind, rest = ev[i]
            if tid in src and kind == 'sys_enter' and rest.startswith(SEND):
                how, j = None, i + 1
                while j < len(ev) and ev[j][0] - t < 5000:
                    _, _, tid2, kind2, rest2 = ev[j]
                    if kind2 == 'sched_wakeup':
                        m = pid.search(rest2)
                        if m and m.group(1) in dst:
                            how = 'in the sender' if tid2 == tid else 'elsewhere'
                    if tid2 in dst and kind2 == 'sys_exit':
                        kinds.setdefault(how or 'already awake', []).append(ev[j][0] - t)
                        break
                    j += 1
                i = j
            i += 1
        print(f'  {name} send -> woken thread runs, by where the wake-up happened:')
        for how, d in sorted(kinds.items()):
            print(f'    {how:15} n {len(d):4}  med {st.median(d):6.1f} us')


if __name__ == '__main__':
    main(*sys.argv[1:5])
