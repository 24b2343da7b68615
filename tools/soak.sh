#!/usr/bin/env bash
# Soak the simulator: many seeds, in chunks, with a summary at the end.
#
#   tools/soak.sh [--seeds N] [--chunk C] [--seed-base S] [--nodes 3,5] [--groups 1,8,64] [--faults all]
#                 [--plant NAME] [--jobs J] [--out DIR] [--fail-fast]
#
# Runs seeds S..S+N-1 (default 0..9999) as chunks of C seeds (default 500), each one `paxos-core sim` run
# (`$PAXOS_CORE sim`, PAXOS_CORE defaulting to "python -m paxos_core": set it to pick a build, e.g.
# PAXOS_CORE=paxos-core). Each chunk's output goes to DIR/chunk-<first seed>.log (default DIR: a new
# soak-<date> directory under /tmp) and one line per chunk is printed as it ends. Chunks keep a failure's
# output short and let a long soak be stopped and resumed (--seed-base). A failing chunk does not stop the
# soak unless --fail-fast is given. The summary (also in DIR/summary.txt) gives the seeds, chunks,
# violations, wall time, every failing chunk's log and the `reproduce:` lines the simulator printed, and a
# hash over every chunk's trace hash (the same arguments give the same hash). Exit status 0 only if every
# chunk passed.
set -uo pipefail

seeds=10000 chunk=500 base=0 nodes=3,5 groups=1,8,64 faults=all plant="" jobs="" out="" fail_fast=0
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds=$2; shift 2 ;;
        --chunk) chunk=$2; shift 2 ;;
        --seed-base) base=$2; shift 2 ;;
        --nodes) nodes=$2; shift 2 ;;
        --groups) groups=$2; shift 2 ;;
        --faults) faults=$2; shift 2 ;;
        --plant) plant=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --fail-fast) fail_fast=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "tools/soak.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done
for n in "$seeds" "$chunk" "$base"; do
    case "$n" in ''|*[!0-9]*) echo "tools/soak.sh: --seeds, --chunk and --seed-base take whole numbers" >&2; exit 2 ;; esac
done
[ "$chunk" -gt 0 ] || { echo "tools/soak.sh: --chunk must be at least 1" >&2; exit 2; }
read -r -a command <<< "${PAXOS_CORE:-python -m paxos_core}"
out=${out:-$(mktemp -d "/tmp/soak-$(date -u +%Y%m%d-%H%M%S)-XXXX")}
mkdir -p "$out"

started=$(date +%s)
done_seeds=0 violations=0 chunks=0 failed=() traces=""
echo "soak: seeds $base..$((base + seeds - 1)) in chunks of $chunk, nodes $nodes, groups $groups, faults $faults${plant:+, plant $plant}; logs in $out"
first=$base
while [ "$first" -lt $((base + seeds)) ]; do
    n=$(( base + seeds - first < chunk ? base + seeds - first : chunk ))
    log="$out/chunk-$first.log"
    args=(sim --seeds "$n" --seed-base "$first" --nodes "$nodes" --groups "$groups" --faults "$faults")
    [ -n "$plant" ] && args+=(--plant "$plant")
    [ -n "$jobs" ] && args+=(--jobs "$jobs")
    t0=$(date +%s)
    "${command[@]}" "${args[@]}" > "$log" 2>&1
    status=$?
    last=$(tail -n 1 "$log")
    chunks=$((chunks + 1))
    if [[ "$last" =~ ^seeds=([0-9]+)\ violations=([0-9]+)\ trace=([0-9a-f]+)$ ]]; then
        done_seeds=$((done_seeds + BASH_REMATCH[1]))
        violations=$((violations + BASH_REMATCH[2]))
        traces+="$first:${BASH_REMATCH[3]};"
    else
        last="no summary line (exit status $status)"
    fi
    printf 'chunk %d..%d: %s (%ds)\n' "$first" $((first + n - 1)) "$last" $(( $(date +%s) - t0 ))
    if [ "$status" -ne 0 ]; then
        failed+=("$log")
        [ "$fail_fast" -eq 1 ] && break
    fi
    first=$((first + n))
done

wall=$(( $(date +%s) - started ))
hash=$(printf '%s' "$traces" | sha256sum | cut -c1-32)
{
    echo "soak summary: seeds=$done_seeds chunks=$chunks failed_chunks=${#failed[@]} violations=$violations" \
         "wall=$((wall / 3600))h$(( (wall % 3600) / 60 ))m$((wall % 60))s traces=$hash"
    for log in "${failed[@]}"; do
        echo "failed chunk: $log"
        grep -h 'reproduce:' "$log" | sed 's/^ */    /'
    done
} | tee "$out/summary.txt"
[ "${#failed[@]}" -eq 0 ]
