"""Fixture results directories written exactly as docs/results-schema.md says the analyses write them.

Three models of Study A's shape, tiny: a Gated DeltaNet hybrid (qwen3_5), a Transformer control (qwen2) and a
pure-SSM control (mamba2). Numbers are drawn from a seeded generator so that they look like real results
(CIs around values, some CIs crossing zero) without being hand-typed.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
from pathlib import Path

import pytest

CSV_COLUMNS = ("model", "family", "analysis", "condition", "method", "metric", "value", "ci_low", "ci_high",
               "n", "seed")
BENCHMARKS = ("arc", "mmlu")
PROBE = "<script>alert(1)</script>\"'<img src=x onerror=alert(1)>"
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]


def axe_path() -> Path | None:
    """axe-core's browser build: $MECHHYBRID_AXE_JS, else the repository's node_modules (.ci/run installs it
    there with npm); None when neither exists."""
    import os

    for candidate in (os.environ.get("MECHHYBRID_AXE_JS"), REPO / "node_modules" / "axe-core" / "axe.min.js"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (screenshots): $MECHHYBRID_TEST_ARTIFACTS, else
    out/test-artifacts in the repository (git ignores out/)."""
    import os

    folder = Path(os.environ.get("MECHHYBRID_TEST_ARTIFACTS") or REPO / "out" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _components(kinds_per_layer):
    return [{"layer": layer, "kind": kind, "path": f"model.layers.{layer}.{kind}"}
            for layer, kinds in enumerate(kinds_per_layer) for kind in kinds]


# A zoo model's card as analyses.common.model_info embeds it (mechhybrid.zoo.card.card_summary of card.json).
CARD = {"description": "Gated DeltaNet + attention, 3:1", "recipe": {"version": 4, "seed": 0, "steps": 5000},
        "language_version": "zoo-lang-1", "benchmark_version": "zoo-bench-1", "steps": 5000,
        "tokens_trained": 8071234, "wall_time_s": 2100.5, "cpu_time_s": 2012.25, "trained_on": "cpu",
        "dtype": "float32", "bigram_perplexity": 12.445655737991387,
        "quality": {"perplexity_below_bigram": True, "needle_bar": True},
        "scores": {"lm": {"metric": "perplexity", "score": 7.912345678901234, "n": 64},
                   "needle": {"metric": "exact_match", "score": 0.98125, "n": 160, "chance": 0.01,
                              "by_context_len": {"64": 1.0, "128": 1.0, "256": 0.975, "512": 0.95}}},
        "loss_curve": [[25, 3.5], [50, 2.9], [75, 2.512345]],
        "stop": {"step": 1000, "reason": "plateau: best needle probe 0.9750 ..."},
        "needle_probe_curve": [
            {"step": 250, "needle": {"128": 0.11, "256": 0.03}, "needle_se": {"128": 0.031, "256": 0.018},
             "needle_n": {"128": 100, "256": 100}, "needle_mean": 0.07, "needle_mean_se": 0.0179},
            {"step": 500, "needle": {"128": 0.64, "256": 0.52}, "needle_se": {"128": 0.047, "256": 0.049},
             "needle_n": {"128": 100, "256": 100}, "needle_mean": 0.58, "needle_mean_se": 0.0339},
            {"step": 750, "needle": {"128": 0.99, "256": 0.96}, "needle_se": {"128": 0.013, "256": 0.021},
             "needle_n": {"128": 100, "256": 100}, "needle_mean": 0.975, "needle_mean_se": 0.01235}],
        "steps_to_retrieval": {"0.5": 500, "0.9": 750}}
# A card from before probes had standard errors (as card_summary passes it on): means, no SEs, no stop record.
CARD_OLD = {"description": "Pure state-space control", "recipe": {"version": 4, "seed": 0, "steps": 5000},
            "steps": 5000, "tokens_trained": 8075296,
            "needle_probe_curve": [{"step": 250, "needle": {"128": 0.2, "256": 0.0}, "needle_mean": 0.1,
                                    "needle_mean_se": None},
                                   {"step": 500, "needle": {"128": 0.7, "256": 0.6}, "needle_mean": 0.65,
                                    "needle_mean_se": None}],
            "steps_to_retrieval": {"0.5": 500, "0.9": None}}

MODELS = {
    "hybrid": {"name": "zoo:gdn-hybrid", "family": "qwen3_5", "topology": "sequential", "n_params": 812345,
               "n_layers": 4, "components": _components([["linear_attention", "mlp"]] * 3 + [["attention", "mlp"]]),
               "card": CARD},
    "transformer": {"name": "zoo:tiny-qwen2", "family": "qwen2", "topology": "sequential", "n_params": 701000,
                    "n_layers": 4, "components": _components([["attention", "mlp"]] * 4)},
    "ssm": {"name": "zoo/tiny-mamba2", "family": "mamba2", "topology": "sequential", "n_params": 650000,
            "n_layers": 4, "components": _components([["ssm"]] * 4), "card": CARD_OLD},
}


def _row(condition, metric, value, half_width=None, n=100, seed=0, method="zero"):
    low = None if half_width is None else value - half_width
    high = None if half_width is None else value + half_width
    return {"condition": condition, "method": method, "metric": metric, "value": value, "ci_low": low,
            "ci_high": high, "n": n, "seed": seed}


def _lm(rows, rng, condition, method, ratio=None, n=64):
    """What the analysis writes for a language-modelling condition: ppl, clamp_frac, and the ratio."""
    rows.append(_row(condition, "ppl", 10 ** rng.uniform(0.7, 4.5), n=n, method=method))
    rows.append(_row(condition, "clamp_frac", rng.choice([0.0, rng.uniform(0, 0.2)]), n=n, method=method))
    if ratio is not None:
        rows.append(_row(condition, "ppl_ratio", ratio, None, n=n, method=method))
        rows[-1]["ci_low"], rows[-1]["ci_high"] = ratio * rng.uniform(0.7, 0.95), ratio * rng.uniform(1.05, 1.4)


def _scored(rows, rng, condition, method):
    # n = 2000 as Study A's MMLU: a tooltip must show "2000" exactly as results.csv has it.
    for b in BENCHMARKS:
        rows.append(_row(condition, f"acc:{b}", rng.uniform(0.2, 0.5), 0.04, n=2000, method=method))
        rows.append(_row(condition, f"drop:{b}", rng.uniform(-0.03, 0.5), 0.04, n=2000, method=method))
    _lm(rows, rng, condition, method, ratio=10 ** rng.uniform(-0.05, 4.5))


def ablation_rows(model: dict, rng: random.Random, method: str = "zero", methods=None) -> list[dict]:
    """The rows analyses.component_ablation writes (Study A exp. 1-6), for `methods` (default: [method])."""
    mixers = sorted({c["kind"] for c in model["components"] if c["kind"] != "mlp"})
    rows = [_row("baseline", f"acc:{b}", rng.uniform(0.5, 0.8), 0.04, method="none") for b in BENCHMARKS]
    _lm(rows, rng, "baseline", "none")
    for tokens in (128, 256, 512, 1024):
        _lm(rows, rng, f"context:{tokens}:baseline", "none", n=16)
    for m in methods or [method]:
        for kind in mixers:
            _scored(rows, rng, f"group:{kind}", m)
            for trial in range(3):
                _scored(rows, rng, f"random:{kind}:{trial}", m)
            for where in ("early", "middle", "late"):
                _scored(rows, rng, f"third:{where}:{kind}", m)
            for tokens in (128, 256, 512, 1024):
                _lm(rows, rng, f"context:{tokens}:group:{kind}", m, ratio=10 ** rng.uniform(0, 3), n=16)
        for c in model["components"]:
            _scored(rows, rng, f"layer:{c['layer']}:{c['kind']}", m)
    for removed in (1, 3):
        trials = []
        for trial in range(5):
            _lm(rows, rng, f"resilience:{removed}:{trial}", "skip", ratio=10 ** rng.uniform(0, 4))
            trials.append(rows[-3]["value"])
        ordered = sorted(trials)
        rows.append(_row(f"resilience:{removed}:summary", "ppl_median", ordered[2], n=5, method="skip"))
        rows.append(_row(f"resilience:{removed}:summary", "ppl_geomean", ordered[1], n=5, method="skip"))
    return rows


def representation_rows(model: dict, rng: random.Random, others=()) -> list[dict]:
    rows = []
    diagnostics = ("rel_norm_change", "cosine", "out_in_norm_ratio", "kl_logit_lens", "cka")
    for c in model["components"]:
        for d in diagnostics:
            rows.append(_row(f"layer:{c['layer']}:{c['kind']}", d, rng.uniform(0, 1), n=64))
    for d in diagnostics:
        for b in (*BENCHMARKS, "lm"):  # lm: correlated with the perplexity ratio
            rho = rng.uniform(-0.6, 0.6)
            rows.append(_row(f"corr:{d}:{b}", "spearman", rho, 0.35, n=len(model["components"])))
    for other in others:
        for layer in range(model["n_layers"]):
            rows.append(_row(f"cka_models:{other}", f"cka:{layer}", rng.uniform(0, 1), n=64, method="none"))
    return rows


def result(model: dict, analysis: str, rows: list[dict], method: str = "zero", data_name: str = "lm") -> dict:
    # The ablation analysis records its loss clamp (analyses/ablation/analysis.py); the page states it.
    extra = {"loss_clamp": 20.0} if analysis == "component_ablation" else {}
    return {"schema_version": 1, "analysis": analysis, "model": model, "config": {"benchmarks": list(BENCHMARKS)},
            "method": method, "data": [{"name": data_name, "version": "zoo-lang-1", "n": 64}], "seed": 0,
            "versions": {"mechhybrid": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0", "nnsight": "0.8.1"},
            "rows": rows, "extra": extra}


def slug(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


def write_results(out_dir: Path, results: list[dict]) -> Path:
    """Write each Result to OUT/results/<slug>/<analysis>.json and all rows to OUT/results.csv."""
    csv_rows = []
    for res in results:
        folder = out_dir / "results" / slug(res["model"]["name"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{slug(res['analysis'])}.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
        for row in res["rows"]:
            csv_rows.append([res["model"]["name"], res["model"]["family"], res["analysis"], row["condition"],
                             row["method"], row["metric"], *["" if row[k] is None else repr(row[k])
                                                             for k in ("value", "ci_low", "ci_high", "n", "seed")]])
    csv_rows.sort()
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_rows)
    return out_dir


def study_results(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    names = [m["name"] for m in MODELS.values()]
    out = []
    for key, model in MODELS.items():
        # The hybrid was run under two semantics, as Study A's two model families were.
        methods = ["zero", "mean"] if key == "hybrid" else ["zero"]
        out.append(result(model, "component_ablation", ablation_rows(model, rng, methods=methods),
                          method="mixed" if len(methods) > 1 else "zero"))
        out.append(result(model, "representation",
                          representation_rows(model, rng, [n for n in names if n != model["name"]])))
    return out


def probe_results() -> list[dict]:
    """The injection probe through every user-controlled string: model name (and so the file name), family,
    condition, method, metric, data name and version, config, versions and the analysis name."""
    rng = random.Random(1)
    card = dict(CARD, description=PROBE, trained_on=PROBE, quality={PROBE: PROBE},
                scores={PROBE: {"metric": PROBE, "score": 0.5, "n": PROBE, "by_context_len": {PROBE: 1.0}},
                        "broken": PROBE},
                loss_curve=[[1, 2.0], [PROBE, 1.0], "x", [3, None]],  # malformed points are left out
                stop={"step": PROBE, "reason": PROBE}, steps_to_retrieval={PROBE: 250, "0.9": PROBE},
                needle_probe_curve=[{"step": 250, "needle": {PROBE: 0.5}, "needle_se": {PROBE: PROBE},
                                     "needle_n": {PROBE: PROBE}, "needle_mean": 0.5, "needle_mean_se": PROBE},
                                    "x", {"step": PROBE, "needle": {}}, {"step": 500, "needle": PROBE}])
    model = dict(MODELS["hybrid"], name=f"zoo:{PROBE}", family=f"fam{PROBE}",
                 components=_components([[f"kind{PROBE}"], ["attention"]]), n_layers=2, card=card)
    rows = ablation_rows(model, rng, method=f"zero{PROBE}")
    rows.append(_row(f"group:{PROBE}", f"drop:{PROBE}", 0.25, 0.05))
    abl = result(model, "component_ablation", rows, method=f"zero{PROBE}", data_name=f"data{PROBE}")
    abl["config"] = {"note": PROBE}
    abl["extra"] = {"notes": [f"note{PROBE}"]}
    abl["versions"] = dict(abl["versions"], torch=PROBE)
    abl["data"][0]["version"] = PROBE
    other = result(model, f"x{PROBE}", [_row(f"cond{PROBE}", f"metric{PROBE}", 0.5, 0.1)])
    return [abl, other]


TOY = "toy_sweep"
"""A made-up analysis with no view in reports/: a patching sweep over layer x position, and a side graph."""


def toy_result(model: dict, offset: float = 0.0):
    """The toy analysis' Result (mechhybrid.results, schema version 2) on `model`: `logit_diff` = layer +
    position / 4 + `offset` (exact in binary) with a CI of +-0.125 over layers 0-3 and positions 0-2, then
    `recovered` per phase (a string coordinate, no CI), and a side graph of 3 nodes and 2 edges."""
    import networkx as nx

    from mechhybrid.results import Result

    rows = [{"condition": f"patch:{layer}:{position}", "method": "patch", "metric": "logit_diff",
             "value": layer + position / 4 + offset, "ci_low": layer + position / 4 + offset - 0.125,
             "ci_high": layer + position / 4 + offset + 0.125, "n": 20, "seed": 0,
             "coords": {"layer": layer, "position": position, "phase": "prefill"}}
            for layer in range(4) for position in range(3)]
    rows += [{"condition": f"recover:{phase}", "method": "patch", "metric": "recovered", "value": value,
              "ci_low": None, "ci_high": None, "n": 16, "seed": 0, "coords": {"phase": phase}}
             for phase, value in (("prefill", 0.875 + offset), ("decode", 0.625 + offset))]
    result = Result(analysis=TOY, model=model, config={"positions": 3}, method="patch",
                    data=[{"name": "toy", "version": "toy-1", "n": 20}], seed=0,
                    versions={"mechhybrid": "0.1.0"}, rows=rows)
    graph = nx.DiGraph()
    graph.add_edge("embed", "layer 2", weight=0.5)
    graph.add_edge("layer 2", "logits", weight=0.25)
    result.attach("circuit", graph)
    return result


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory) -> Path:
    return write_results(tmp_path_factory.mktemp("study"), study_results())


@pytest.fixture(scope="session")
def rendered_study(study_dir, tmp_path_factory) -> Path:
    """The study fixture, rendered once per test session (rendering is the slow part)."""
    import reports

    out = tmp_path_factory.mktemp("rendered")
    shutil.copytree(study_dir, out, dirs_exist_ok=True)
    reports.render(out)
    return out


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory) -> Path:
    import reports

    # Beside the probes, the smallest clean model (the pure-SSM control): its pages must render too.
    out = write_results(tmp_path_factory.mktemp("probe"), study_results()[4:6] + probe_results())
    reports.render(out)
    return out


class Browser:
    """Headless Chromium driven over the DevTools protocol (websocket-client), network switched off."""

    def __init__(self):
        import re
        import subprocess
        import tempfile

        import websocket

        self.profile = tempfile.mkdtemp(prefix="mh-chromium-")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        for _ in range(500):
            line = self.proc.stderr.readline()
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            self.close()
            raise RuntimeError("chromium did not print its DevTools address")
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def visit(self, path: Path, timeout_s: float = 45) -> dict:
        """Open `path` offline; wait for the page's charts; return what happened."""
        import time

        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            self.send(method, session=session)
        self.send("Network.emulateNetworkConditions", session=session, offline=True, latency=0,
                  downloadThroughput=-1, uploadThroughput=-1)
        self.events.clear()
        self.send("Page.navigate", session=session, url=path.resolve().as_uri())
        state = None
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            state = self.send("Runtime.evaluate", session=session, returnByValue=True, expression=_STATE_JS)
            state = state["result"].get("value")
            if state and state["ready"]:
                break
            time.sleep(0.2)
        events = [e for e in self.events if e.get("sessionId") == session]
        self.send("Target.closeTarget", targetId=target)
        return {"state": state, "events": events}

    def _open(self, path: Path, timeout_s: float = 45) -> tuple[str, str, dict]:
        """Open `path` offline in a 1280 x 900 window and wait for its charts: (target, session, page state)."""
        import time

        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for method in ("Runtime.enable", "Network.enable", "Page.enable"):
            self.send(method, session=session)
        self.send("Network.emulateNetworkConditions", session=session, offline=True, latency=0,
                  downloadThroughput=-1, uploadThroughput=-1)
        self.send("Emulation.setDeviceMetricsOverride", session=session, width=1280, height=900,
                  deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", session=session, url=path.resolve().as_uri())
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            state = self.send("Runtime.evaluate", session=session, returnByValue=True, expression=_STATE_JS)
            if (state["result"].get("value") or {}).get("ready"):
                break
            time.sleep(0.2)
        return target, session, state

    def evaluate(self, path: Path, expression: str):
        """The value of `expression` on `path` once its charts are drawn."""
        target, session, _ = self._open(path)
        try:
            reply = self.send("Runtime.evaluate", session=session, returnByValue=True, awaitPromise=True,
                              expression=expression)
        finally:
            self.send("Target.closeTarget", targetId=target)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{path.name}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def axe(self, path: Path, axe_js: str) -> list[dict]:
        """axe-core's violations on `path` (drawn charts included): [{id, impact, help, nodes: [target, ...]}].
        axe is injected through DevTools, which the page's CSP does not govern; the page itself is unchanged."""
        run = ("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, "
               "impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))})))")
        target, session, _ = self._open(path)
        try:
            for expression, wait in ((axe_js, False), (run, True)):
                reply = self.send("Runtime.evaluate", session=session, returnByValue=True, awaitPromise=wait,
                                  expression=expression)
                if "exceptionDetails" in reply:
                    raise RuntimeError(f"{path.name}: axe failed: {reply['exceptionDetails']}")
        finally:
            self.send("Target.closeTarget", targetId=target)
        return reply["result"]["value"]

    def screenshot(self, path: Path, png: Path) -> Path:
        """The whole drawn page of `path` (1280 px wide) as a PNG."""
        import base64

        target, session, _ = self._open(path)
        try:
            height = self.send("Runtime.evaluate", session=session, returnByValue=True,
                               expression="document.documentElement.scrollHeight")["result"]["value"]
            shot = self.send("Page.captureScreenshot", session=session, format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 16000), "scale": 1})
        finally:
            self.send("Target.closeTarget", targetId=target)
        png.write_bytes(base64.b64decode(shot["data"]))
        return png

    def tooltips(self, path: Path, timeout_s: float = 45) -> list[dict]:
        """Hover the first mark of every chart on `path`; return each tooltip's text and child-element tags."""
        import time

        target, session, state = self._open(path, timeout_s)
        found = []
        for chart in state["result"]["value"]["charts"]:
            point = self.send("Runtime.evaluate", session=session, returnByValue=True,
                              expression=_MARK_JS.replace("CHART_ID", chart["id"]))["result"].get("value")
            if point is None:
                found.append({"chart": chart["id"], "text": None, "tags": []})
                continue
            for dx in (0, 0.5):  # a second move: vega shows the tooltip on pointer movement over the mark
                self.send("Input.dispatchMouseEvent", session=session, type="mouseMoved", x=point[0] + dx,
                          y=point[1] + dx)
                time.sleep(0.1)
            tip = self.send("Runtime.evaluate", session=session, returnByValue=True, expression=_TOOLTIP_JS)
            found.append(dict(tip["result"].get("value") or {"text": None, "tags": []}, chart=chart["id"]))
        self.send("Target.closeTarget", targetId=target)
        return found

    def close(self):
        import subprocess

        if getattr(self, "ws", None):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


# Ready when the bootstrap has drawn every chart (pages without charts have no bootstrap: ready on load).
_STATE_JS = """(() => {
  const specs = document.querySelectorAll('script.vega-spec');
  const done = document.body && document.body.getAttribute('data-charts-done');
  const charts = Array.from(specs).map(s => {
    const el = document.getElementById(s.getAttribute('data-target'));
    return {id: s.getAttribute('data-target'), svg: el ? el.querySelectorAll('svg.marks').length : -1,
            rendered: el ? el.getAttribute('data-rendered') : null, text: el ? el.textContent.slice(0, 200) : ''};
  });
  return {ready: document.readyState === 'complete' && (specs.length === 0 || done !== null),
          specs: specs.length, done: done, charts: charts, imgs: document.querySelectorAll('img').length,
          text: document.body ? document.body.innerText : ''};
})()"""


# The centre of the first data mark (bar, cell or dot, not an axis or legend) of one chart, scrolled into view.
_MARK_JS = """(() => {
  const marks = document.querySelectorAll(
    '#CHART_ID svg g.mark-rect.role-mark path, #CHART_ID svg g.mark-symbol.role-mark path');
  for (const el of marks) {
    el.scrollIntoView({block: 'center', inline: 'center'});
    const r = el.getBoundingClientRect();
    if (r.width > 2 && r.height > 2) return [r.x + r.width / 2, r.y + r.height / 2];
  }
  return null;
})()"""

_TOOLTIP_JS = """(() => {
  const t = document.getElementById('vg-tooltip-element');
  if (!t || !t.classList.contains('visible')) return null;
  return {text: t.innerText, tags: Array.from(t.querySelectorAll('*')).map(e => e.tagName.toLowerCase())};
})()"""


def tooltip_fields(text: str) -> dict[str, str]:
    """vega-tooltip's table as text ('key\\t\\nvalue' per entry) -> {key: value}."""
    fields = {}
    for entry in text.strip().split("\n\n"):
        key, _, value = entry.partition("\t\n")
        fields[key.strip()] = value
    return fields


def problems_in(events: list[dict]) -> list[str]:
    """Console errors and warnings, uncaught exceptions, browser log errors, dialogs, non-file requests."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Runtime.exceptionThrown":
            found.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            found.append(f"log: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            found.append(f"dialog: {params.get('message')}")
        elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith("file:"):
            found.append(f"request: {params['request']['url']}")
    return found


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (CI installs it: apt-get install -y chromium)")
    instance = Browser()
    yield instance
    instance.close()


def page_text(out: Path, name: str) -> str:
    return (out / name).read_text(encoding="utf-8")


def vega_specs(page: str) -> list[dict]:
    """Every chart spec a page holds, in page order."""
    return [json.loads(s) for s in re.findall(r'<script type="application/json" class="vega-spec"[^>]*>(.*?)</script>',
                                              page, re.S)]


def spec_starting(page: str, starts: str) -> dict:
    """The one chart whose description starts with `starts`."""
    found = [s for s in vega_specs(page) if s.get("description", "").startswith(starts)]
    assert len(found) == 1, [s.get("description", "")[:50] for s in vega_specs(page)]
    return found[0]


def spec_values(spec) -> list[dict]:
    """Every record of a spec's inline data, in spec order."""
    out = []
    if isinstance(spec, dict):
        if isinstance(spec.get("data"), dict) and isinstance(spec["data"].get("values"), list):
            out += spec["data"]["values"]
        for key, child in spec.items():
            if key != "data":
                out += spec_values(child)
    elif isinstance(spec, list):
        for child in spec:
            out += spec_values(child)
    return out


def results_csv(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
