"""Notebook 04 in JupyterLab and notebook 08's web demo in a real browser (headless Chromium), as a learner sees
them, on the tiny profile."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from notebook_outputs import stray_outputs

from helpers import chat, course, serving

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMIUM_ARGS = serving.CHROMIUM, serving.CHROMIUM_ARGS  # Debian's chromium; Playwright downloads nothing
# JupyterLab settings for the test: every cell stays in the page, no news or update checks (the network is closed).
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                   "checkForUpdates": False}}
# The state of the page in one call: progress bars (value, style, text), plot images, error outputs, prompts.
PAGE_STATE = """() => ({
  bars: [...document.querySelectorAll('.widget-hprogress')].map(p => ({
    width: parseFloat(p.querySelector('.progress-bar').style.width),
    style: [...p.querySelector('.progress-bar').classList].filter(c => c.startsWith('progress-bar-')).join(' '),
    text: p.parentElement.innerText.replace(/\\u2007/g, ' ')})),
  danger: document.querySelectorAll('.progress-bar-danger').length,
  plots: [...document.querySelectorAll('.widget-output img')].map(i => i.src.length + ':' + i.src.slice(-40)),
  errors: [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .filter(e => e.innerText.includes('Traceback (most recent call last)')).length,
  prompts: [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.innerText.trim()),
  dirty: document.querySelectorAll('.jp-mod-dirty').length})"""


def require_browser() -> None:
    """Skip, saying why, where no browser can run; under CI=true that is a failure instead."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"no {CHROMIUM}: run scripts/install_browser.sh as root (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing (make install)"
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI: {reason}")
    if reason:
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 serving a copy of the course folders, as `make lab` serves the repository (the
    notebooks' pictures are in ../images); its kernels use the tiny profile and a fresh folder."""
    require_browser()
    root, workdir, config = tmp_path / "course", tmp_path / "workspace", tmp_path / "jupyter"
    for folder in ["notebooks", "learner", "images", "docs"]:
        shutil.copytree(REPO / folder, root / folder)
    for name, settings in LAB_SETTINGS.items():
        (config / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (config / "settings" / name).write_text(json.dumps(settings))
    env = dict(os.environ, COURSE_PROFILE="tiny", COURSE_WORKDIR=str(workdir), JUPYTER_CONFIG_DIR=str(config),
               JUPYTERLAB_SETTINGS_DIR=str(config / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(config / "workspaces"))
    port = free_port()
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               "--allow-root", "--IdentityProvider.token=", f"--ServerApp.root_dir={root}",
                               "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
        yield {"url": url, "root": root, "workdir": workdir}
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def open_notebook(page, url: str, name: str) -> None:
    """Open a notebook (``notebooks/NN_...`` or ``learner/NN_...``) in a fresh JupyterLab workspace and wait until its
    kernel is idle."""
    folder, notebook = name.split("/")
    page.goto(f"{url}/lab/workspaces/{folder[0]}{notebook[:2]}/tree/{name}?reset")  # e.g. workspace n04, l04
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)


# Open one notebook as a double-click in the file browser does, wait until JupyterLab has applied its kernel's info
# (the step that rewrites language_info and so marks a notebook modified), then read the tab's unsaved-changes mark;
# shut the kernel down and close the tab without saving. Needs --LabApp.expose_app_in_browser (the lab fixture).
OPEN_AND_CHECK = """async (path) => {
  const panel = await window.jupyterapp.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  await panel.sessionContext.session.kernel.info;
  await new Promise(resolve => setTimeout(resolve, 300));
  const dirty = panel.title.className.includes('jp-mod-dirty');
  await panel.sessionContext.shutdown();
  panel.dispose();
  return dirty;
}"""


def check_notebooks_open_unmodified(page, lab) -> None:
    """Open every notebook (and a control that JupyterLab must modify): no unsaved-changes mark on the course's."""
    control = json.loads((lab["root"] / "notebooks" / "00_environment_and_base_model.ipynb").read_text(encoding="utf-8"))
    control["metadata"]["language_info"] = {"name": "python"}  # differs from what the kernel reports: JupyterLab edits it
    (lab["root"] / "notebooks" / "control.ipynb").write_text(json.dumps(control), encoding="utf-8")
    page.goto(f"{lab['url']}/lab/workspaces/check?reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('docmanager:open')",
                           timeout=120_000)
    for path in sorted([*lab["root"].glob("notebooks/*.ipynb"), *lab["root"].glob("learner/*.ipynb")]):
        dirty = page.evaluate(OPEN_AND_CHECK, str(path.relative_to(lab["root"])))
        assert dirty if path.name == "control.ipynb" else not dirty, f"{path.name}: unsaved-changes mark {dirty}"


def check_pictures_show(page) -> None:
    """Every picture in the open notebook's text (../images/*.png) loaded: JupyterLab serves the folder above."""
    pictures = "[...document.querySelectorAll('.jp-RenderedMarkdown img')]"
    try:
        page.wait_for_function(f"() => {pictures}.length >= 3 && {pictures}.every(i => i.complete && i.naturalWidth > 0)",
                               timeout=30_000)
    except Exception:
        shown = page.evaluate(f"() => {pictures}.map(i => [i.getAttribute('src'), i.naturalWidth])")
        pytest.fail(f"pictures that did not load (src, width): {shown}")


def run_all_and_watch(page, url: str, name: str, limit_s: float = 600) -> list[dict]:
    """Run All Cells in a notebook and sample the page every half second until every cell ran or one failed."""
    open_notebook(page, url, name)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    samples, start = [], time.time()
    while time.time() - start < limit_s:
        samples.append(state := page.evaluate(PAGE_STATE))
        if state["errors"] or all(p.strip("[]:").isdigit() for p in state["prompts"]):
            break
        if state["bars"]:
            page.locator(".widget-hprogress").last.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
    print(f"{name} ran in JupyterLab in {time.time() - start:.0f} s; final state: {json.dumps(state)[:1200]}")
    return samples


def test_notebook_04_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    course.run_course("tiny", str(lab["workdir"]), only=["00", "01", "03"])  # what 04 needs, run with papermill
    for executed in sorted((lab["workdir"] / "reports" / "executed").glob("*.ipynb")):
        assert stray_outputs(json.loads(executed.read_text(encoding="utf-8"))) == [], executed.name
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            check_notebooks_open_unmodified(page, lab)
            samples = run_all_and_watch(page, lab["url"], "notebooks/04_train.ipynb")
            check_pictures_show(page)
            for which, shot in [("first", "04_train_bar.png"), ("last", "04_train_resumed.png")]:
                getattr(page.locator(".widget-hprogress"), which).scroll_into_view_if_needed()
                page.screenshot(path=str(tmp_path / shot))
            page.keyboard.press("Control+s")
            page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            print("screenshots in", tmp_path)
            browser.close()
    state = samples[-1]
    assert not state["errors"] and all(p.strip("[]:").isdigit() for p in state["prompts"]), state["prompts"]
    first_bar = [s["bars"][0]["width"] for s in samples if s["bars"]]
    plots = {plot for s in samples for plot in s["plots"]}
    print(f"{len(samples)} samples; first bar at {sorted(set(first_bar))} %; {len(plots)} different plot images")
    assert len(set(first_bar)) >= 3 and first_bar == sorted(first_bar), f"the bar did not advance: {first_bar}"
    assert len(plots) >= 2, "the live loss plot never updated"
    planned, resumed = state["bars"][:2]
    assert planned["style"] == "progress-bar-info" and "planned stop" in planned["text"], planned
    assert resumed["style"] == "progress-bar-success" and resumed["width"] == 100, resumed
    assert all(s["danger"] == 0 for s in samples), "an error-styled widget on a successful run"
    saved = json.loads((lab["root"] / "notebooks" / "04_train.ipynb").read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in saved["cells"]), "the executed notebook was not saved"
    assert stray_outputs(saved) == []


def test_web_demo_in_a_browser(tiny_model, tmp_path):
    """Type a question into the streamlit page; the reply shown is the model's greedy answer; a screenshot shows both."""
    require_browser()
    question = "你是谁？"
    expected = chat.generate_answers(chat.load_chat_model(tiny_model), [question], "qwen_chat", max_new_tokens=32)[0]
    demo = serving.start_web_demo(tiny_model, "qwen_chat", max_new_tokens=32, log_dir=tmp_path)
    try:
        reply = serving.ask_in_browser(demo, question, tmp_path / "web_demo.png")
    finally:
        demo.stop()
        print("screenshot in", tmp_path)
    assert reply == expected and reply
    png = (tmp_path / "web_demo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert demo.process.poll() is not None


def test_without_a_browser_the_test_skips_but_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium: run scripts/install_browser.sh"):
        require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        require_browser()
