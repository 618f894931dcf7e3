#!/usr/bin/env bash
# Monitoring with the real parts: a 2-rank CPU training exports metrics, the Debian Prometheus server scrapes
# it with the shipped scrape config (launch/monitoring/prometheus/prometheus.yml, targets from the trainer's
# file_sd file), and through Prometheus' HTTP API every query of the shipped Grafana dashboard returns data, and the
# bound terms Prometheus holds equal the ones in the run's log (bound_eval.jsonl). Also promtool on the
# exposition, the scrape config and every dashboard query.
# Usage: monitoring_test.sh DDPM SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 2 "monitoring_test.sh DDPM SOURCE_DIR" "$@"
DDPM="$1"
SRC="$2"
MON="$SRC/launch/monitoring"  # the shipped Prometheus config, Grafana dashboard and dashboard_queries.py
require_executables "$DDPM"
require_files "$MON/prometheus/prometheus.yml" "$MON/dashboard_queries.py" "$MON/grafana/ddpm-dashboard.json"
require_commands mpirun python3 curl promtool prometheus
# The training job and Prometheus (both named by $WORK/ in their command lines: the lib's exit trap kills them too).
TRAIN_PID=""
PROM_PID=""
# shellcheck disable=SC2317  # called by the exit trap, through EXTRA_CLEANUP
stop_background() {
  [[ -n "$TRAIN_PID" ]] && kill "$TRAIN_PID" 2>/dev/null
  [[ -n "$PROM_PID" ]] && kill "$PROM_PID" 2>/dev/null
  wait 2>/dev/null
}
EXTRA_CLEANUP=stop_background
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The shipped config, unchanged, in a folder whose targets/ holds the run's file_sd file.
mkdir -p "$WORK/prom/targets"
cp "$MON/prometheus/prometheus.yml" "$WORK/prom/prometheus.yml"
if promtool check config "$WORK/prom/prometheus.yml" >"$WORK/promtool_config.log" 2>&1; then ok "promtool check config"; else fail "promtool check config"; cat "$WORK/promtool_config.log"; fi
if python3 "$MON/dashboard_queries.py" --dashboard "$MON/grafana/ddpm-dashboard.json" --rules-file "$WORK/rules.yml" >/dev/null &&
   promtool check rules "$WORK/rules.yml" >"$WORK/promtool_rules.log" 2>&1; then
  ok "every dashboard query parses (promtool check rules)"
else
  fail "dashboard queries"; cat "$WORK/promtool_rules.log"
fi

RUN="$WORK/run"
mpirun --oversubscribe -np 2 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain --set "run.dir=$RUN" \
  --set train.steps=100000 --set train.log_every=2 --set train.checkpoint_every=20 --set diffusion.timesteps=40 \
  --set monitoring.eval_every=10 --set monitoring.base_port=0 \
  --set diffusion.model_variance=learned_range --set diffusion.loss=hybrid --set train.timestep_sampler=loss_second_moment \
  >"$WORK/train.log" 2>&1 &
TRAIN_PID=$!
for _ in $(seq 300); do [[ -f "$RUN/prometheus_targets.json" ]] && break; sleep 0.1; done
if [[ -f "$RUN/prometheus_targets.json" ]]; then ok "the trainer wrote its file_sd targets"; else fail "no targets file"; tail "$WORK/train.log"; finish; fi
ln -s "$RUN/prometheus_targets.json" "$WORK/prom/targets/run.json"

# promtool on a live exposition of rank 1.
target="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["targets"][1])' "$RUN/prometheus_targets.json")"
sleep 2
if curl -sf "http://$target/metrics" | promtool check metrics >"$WORK/promtool_metrics.log" 2>&1; then
  ok "promtool check metrics on rank 1's /metrics ($target)"
else
  fail "promtool check metrics"; cat "$WORK/promtool_metrics.log"
fi

# Nothing but GET /metrics answers.
code_other="$(curl -s -o /dev/null -w '%{http_code}' "http://$target/other")"
code_post="$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$target/metrics")"
if [[ "$code_other" == 404 && "$code_post" == 405 ]]; then ok "only GET /metrics (404 elsewhere, 405 for POST)"; else fail "GET /other: $code_other, POST: $code_post"; fi
# A client that connects and sends nothing is dropped after 2 s; the endpoint answers again after it.
python3 -c 'import socket,sys,time; h,p=sys.argv[1].split(":"); s=socket.create_connection((h,int(p))); time.sleep(3)' "$target" &
sleep 0.5
if curl -sf -m 5 "http://$target/metrics" | grep -q ddpm_steps_total; then ok "a stalled client does not block the endpoint"; else fail "endpoint blocked by a stalled client"; fi

PROM_PORT="$(free_port)"
prometheus --config.file="$WORK/prom/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
API="http://127.0.0.1:$PROM_PORT/api/v1"

query() { curl -sfG "$API/query" --data-urlencode "query=$1"; }
# Wait until both ranks were scraped a few times and an evaluation is in (rate() needs two samples).
ready=0
for _ in $(seq 120); do
  n="$(query 'count(count_over_time(ddpm_bound_bpd{source="eval",term="total"}[1m]) >= 3)' |
       python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null)"
  [[ "$n" == "2" ]] && { ready=1; break; }
  sleep 1
done
if [[ $ready -eq 1 ]]; then ok "Prometheus scraped both ranks, evaluations included"; else fail "Prometheus never saw both ranks"; tail -5 "$WORK/prometheus.log"; fi

run_name="$(basename "$RUN")"
python3 "$MON/dashboard_queries.py" --dashboard "$MON/grafana/ddpm-dashboard.json" --run "$run_name" --json >"$WORK/queries.json"
if python3 - "$API" "$WORK/queries.json" <<'PY'; then ok "every dashboard panel's query returns data"; else fail "some dashboard queries returned nothing"; fi
import json, sys, urllib.parse, urllib.request
api, queries = sys.argv[1], json.load(open(sys.argv[2]))
empty = []
for q in queries:
    url = api + "/query?" + urllib.parse.urlencode({"query": q["expr"]})
    answer = json.load(urllib.request.urlopen(url))
    if answer["status"] != "success" or not answer["data"]["result"]:
        empty.append(q)
print(f"{len(queries) - len(empty)}/{len(queries)} queries returned data")
for q in empty:
    print("  no data:", q["panel"], "|", q["expr"])
sys.exit(1 if empty or not queries else 0)
PY

# The improved-DDPM figures (this run learns its variance and importance-samples t): the mean log σ² of each range
# lies between the ends of learned_range's interpolation (log β̃_t ≥ −14 at T = 40, log β_t ≤ log 0.5), and the
# sampler's probabilities over the ranges (step 1 and the bound's 4) sum to 1.
if python3 - "$API" <<'PY'; then ok "learned variance and timestep sampler metrics in Prometheus"; else fail "improved-DDPM metrics"; fi
import json, math, sys, urllib.parse, urllib.request
api = sys.argv[1]
def result(q):
    return json.load(urllib.request.urlopen(api + "/query?" + urllib.parse.urlencode({"query": q})))["data"]["result"]
log_var = result('ddpm_model_log_variance{rank="0"}')
assert len(log_var) == 5, log_var
for r in log_var:
    v = float(r["value"][1])
    assert math.isfinite(v) and -14.0 < v < math.log(0.5), (r["metric"]["t_range"], v)
p = result('ddpm_timestep_sampler_probability{rank="1"}')
assert len(p) == 5, p
total = sum(float(r["value"][1]) for r in p)
assert abs(total - 1.0) < 1e-9, total
print("log σ² by range:", sorted((r["metric"]["t_range"], round(float(r["value"][1]), 3)) for r in log_var),
      "sampler mass:", sorted((r["metric"]["t_range"], round(float(r["value"][1]), 4)) for r in p))
PY

# Prometheus' bound terms = the run's log, for the evaluation Prometheus last scraped. The run is stopped first
# (its log complete); a scrape of the stopped targets then marks their series stale, which hides them from a plain
# query: last_over_time reads the last sample scraped all the same.
kill "$TRAIN_PID" 2>/dev/null; wait "$TRAIN_PID" 2>/dev/null; TRAIN_PID=""
if python3 - "$API" "$RUN/bound_eval.jsonl" <<'PY'; then ok "bound terms in Prometheus equal the run's log"; else fail "bound terms differ from the log"; fi
import json, sys, urllib.parse, urllib.request
api, log = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])]
def value(q):
    q = f"last_over_time({q}[2m])"
    r = json.load(urllib.request.urlopen(api + "/query?" + urllib.parse.urlencode({"query": q})))["data"]["result"]
    assert r, q
    return float(r[0]["value"][1])
step = int(value('ddpm_bound_eval_step{rank="0"}'))
line = next(l for l in log if l["step"] == step)
checks = {"total": line["total_bpd"], "prior": line["prior_bpd"], "decoder": line["decoder_bpd"], "vb_sum": line["vb_terms_sum_bpd"]}
for term, expected in checks.items():
    got = value(f'ddpm_bound_bpd{{rank="0",source="eval",term="{term}"}}')
    assert abs(got - expected) <= 1e-9 * max(1.0, abs(expected)), (term, got, expected)
ranges = json.load(urllib.request.urlopen(api + "/query?" + urllib.parse.urlencode(
    {"query": 'last_over_time(ddpm_bound_range_bpd{rank="0",source="eval"}[2m])'})))["data"]["result"]
got = sorted((int(r["metric"]["t_range"].split("-")[0]), float(r["value"][1])) for r in ranges)
assert [v for _, v in got] == line["range_bpd"] or all(abs(a - b) < 1e-9 for (_, a), b in zip(got, line["range_bpd"])), (got, line["range_bpd"])
assert abs(sum(line["range_bpd"]) - line["vb_terms_sum_bpd"]) < 1e-9
assert len(line["per_t_bpd"]) == 40
print("step", step, "total", line["total_bpd"], "ranges", len(got))
PY

finish
