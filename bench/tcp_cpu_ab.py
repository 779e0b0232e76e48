#!/usr/bin/python3
"""CPU seconds per GB of one TCP bench shape, client and server separately, for builds side by side in one run.

    bench/tcp_cpu_ab.py ROUNDS SIZE INFLIGHT OP LABEL=CLIDIR[@VAR:VALUE,...] ... [mc]

Each LABEL starts its own node from CLIDIR (a directory with kvasir.dll, or with a native kvasir binary from
`./kvasir publish DIR`, for a host without .NET) and drives it with that CLI's
`kvasir bench --transport tcp`; `mc` adds memcached, driven by the CLI in $MCCLI (default: the first LABEL's).
VAR:VALUE pairs go into that label's bench client's environment (NODE_VAR:VALUE into its node's; ARG_NAME:VALUE
adds `--NAME VALUE` to its bench's arguments, e.g. k=DIR@ARG_value-crc:given). Rounds rotate
the order; round 0 warms the nodes and is not counted. Client: the bench's client_cpu_s_per_gb (its own CPU over
the measured time) and context switches per request; server: the node's (or memcached's) utime+stime from /proc
over the whole bench run, over the bytes of warm-up plus measured time (assumed at the measured rate). On a shared
machine these move far less than GB/s. $DUR: measured seconds (default 3); $EXTRA: more bench arguments."""
import json, os, socket, subprocess, sys, time
rounds, size, inflight, op = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
variants = [a.split('=', 1) for a in sys.argv[5:] if '=' in a]
envs = {}
for v in variants:
    if '@' in v[1]:
        v[1], e = v[1].split('@', 1)
        envs[v[0]] = dict(x.split(':') for x in e.split(','))
use_mc = 'mc' in sys.argv[5:]
tick = os.sysconf('SC_CLK_TCK')
def kvasir(cli):
    """The command that runs CLIDIR's CLI: its native binary when it has no kvasir.dll."""
    native = os.path.join(cli, 'kvasir')
    return [native] if not os.path.exists(os.path.join(cli, 'kvasir.dll')) and os.access(native, os.X_OK) else ['dotnet', f'{cli}/kvasir.dll']
def free_port():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p
def wait_port(p):
    for _ in range(300):
        try: socket.create_connection(('127.0.0.1', p)).close(); return
        except OSError: time.sleep(0.1)
    raise SystemExit(f'no listener on {p}')
def cpu(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def switches(pid):
    n = 0
    for t in os.listdir(f'/proc/{pid}/task'):
        try:
            for line in open(f'/proc/{pid}/task/{t}/status'):
                if 'ctxt_switches' in line: n += int(line.split()[1])
        except OSError: pass
    return n
procs = []
servers = {}
try:
    for label, cli in variants:
        p = free_port()
        nenv = {k[5:]: v for k, v in envs.get(label, {}).items() if k.startswith('NODE_')}
        pr = subprocess.Popen(kvasir(cli) + ['serve', '--port', str(p), '--memory', '2GiB', '--admin-port', 'off', '--log-level', 'warning'], stdout=subprocess.DEVNULL, env={**os.environ, **nenv})
        procs.append(pr); servers[label] = (pr.pid, p, cli, 'kvasir')
    if use_mc:
        p = free_port()
        pr = subprocess.Popen(['memcached', '-u', 'root', '-l', '127.0.0.1', '-p', str(p), '-U', '0', '-m', '2048', '-I', '8m', '-t', str(min(os.cpu_count(), 4)), '-c', '1024'])
        procs.append(pr); servers['mc'] = (pr.pid, p, os.environ.get('MCCLI', variants[0][1]), 'memcached')
    for _, (pid, p, _, _) in servers.items(): wait_port(p)
    warm, dur = 1.0, float(os.environ.get('DUR', '3'))
    res = {k: [] for k in servers}
    for r in range(rounds + 1):   # round 0 warms the nodes' JIT, not counted
        order = list(servers)
        order = order[r % len(order):] + order[:r % len(order)]
        for label in order:
            pid, p, cli, target = servers[label]
            c0, s0 = cpu(pid), switches(pid)
            args = kvasir(cli) + ['bench', '--target', target, '--server', f'127.0.0.1:{p}', '--op', op, '--value-size', size,
                    '--inflight', inflight, '--duration', str(dur), '--warmup', str(warm), '--key-space', '256MiB', '--json', '--no-progress']
            if target == 'kvasir': args += ['--transport', 'tcp']
            args += os.environ.get('EXTRA', '').split()
            spec = envs.get(label, {})
            for k, v in spec.items():
                if k.startswith('ARG_'): args += [f'--{k[4:]}', v]
            out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **{k: v for k, v in spec.items() if not k.startswith('ARG_')}})
            c1, s1 = cpu(pid), switches(pid)
            line = [l for l in out.stdout.splitlines() if l.startswith('{')]
            if not line: print(label, 'FAILED', out.stdout, out.stderr); continue
            d = json.loads(line[-1])
            gb_all = d['gbps'] * (d['seconds'] + warm)
            node = (c1 - c0) / gb_all
            req_all = d['requests'] * (d['seconds'] + warm) / d['seconds']
            row = dict(gbps=d['gbps'], client=d.get('client_cpu_s_per_gb', float('nan')), node=node,
                       csw=d.get('client_switches_per_request', float('nan')), nsw=(s1 - s0) / req_all, err=d['errors'] + d['verify_failures'])
            if r > 0 or rounds == 0: res[label].append(row)
            print(f"r{r} {label:8s} {d['gbps']:.2f} GB/s client {row['client']:.3f} s/GB node {node:.3f} s/GB sum {row['client']+node:.3f}  csw/req {row['csw']:.1f} nsw/req {row['nsw']:.1f} err {row['err']}", flush=True)
    import statistics as st
    print(f'== {op} {size} x{inflight}: medians over {rounds} rounds')
    for label, rows in res.items():
        if not rows: continue
        m = lambda k: st.median(x[k] for x in rows)
        print(f"{label:8s} {m('gbps'):.2f} GB/s  client {m('client'):.3f}  server {m('node'):.3f}  sum {m('client')+m('node'):.3f} s/GB  csw/req {m('csw'):.1f}  server sw/req {m('nsw'):.1f}")
finally:
    for pr in procs: pr.terminate()
    for pr in procs: pr.wait()
