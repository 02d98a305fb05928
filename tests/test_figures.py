"""The figures in images/ are drawn by scripts/draw_figures.py, are up to date, and are shown somewhere."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_script():
    spec = importlib.util.spec_from_file_location("draw_figures", REPO / "scripts" / "draw_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


draw_figures = _load_script()
NAMES = list(draw_figures.FIGURES)
REGENERATE = "run: .venv/bin/python scripts/draw_figures.py (then look at the figures before committing them)"


@pytest.fixture(scope="module")
def fresh(tiny_model, tmp_path_factory) -> Path:
    """Every figure drawn again, into a temporary folder, with the tests' tiny model's tokenizer."""
    out = tmp_path_factory.mktemp("figures")
    for name in NAMES:
        draw_figures.render(name, out, model_dir=str(tiny_model))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_figure_shows_what_the_course_code_computes_now(name, fresh):
    committed = REPO / "images" / f"{name}.png"
    assert committed.is_file(), f"images/{name}.png is missing; {REGENERATE}"
    old = json.loads(draw_figures.read_text_chunks(committed).get("Data", "{}"))
    new = json.loads(draw_figures.read_text_chunks(fresh / f"{name}.png")["Data"])
    assert old == new, f"images/{name}.png shows old numbers; {REGENERATE}"


@pytest.mark.parametrize("name", NAMES)
def test_figure_pixels_are_up_to_date(name, fresh):
    committed, new = REPO / "images" / f"{name}.png", fresh / f"{name}.png"
    drawn_by = draw_figures.read_text_chunks(committed).get("Renderer")
    if drawn_by != draw_figures.read_text_chunks(new)["Renderer"]:
        pytest.skip(f"images/{name}.png was drawn by {drawn_by}: text rasterisation differs between matplotlib "
                    "releases, so only its data is compared here")
    rms = draw_figures.pixel_rms(committed, new)
    assert rms <= draw_figures.PIXEL_TOLERANCE, f"images/{name}.png looks different (RMS {rms:.2f}); {REGENERATE}"


@pytest.mark.parametrize("name", NAMES)
def test_figure_is_shown_in_a_notebook_or_the_readme(name):
    texts = [(REPO / "README.md").read_text(encoding="utf-8")]
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        texts += ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert any(re.search(rf"!\[[^\]]*\]\((\.\./)?images/{name}\.png\)", text) for text in texts), \
        f"images/{name}.png is not embedded in README.md or any notebook's markdown"


def test_every_png_in_images_is_drawn_by_the_script_or_by_the_course():
    drawn = {f"{name}.png" for name in NAMES}
    made_by_the_course = {"loss_cpu.png"}  # the measured loss curve of a `make course` run (README)
    assert {p.name for p in (REPO / "images").glob("*.png")} <= drawn | made_by_the_course


def test_a_stale_figure_is_detected(fresh, tmp_path):
    """The check is not blind: changed numbers and changed pixels both count as stale."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    source = fresh / "lora.png"
    chunks = draw_figures.read_text_chunks(source)
    assert draw_figures.stale_reasons(source, source) == []

    def save(path, data, scribble):
        info = PngInfo()
        for key, value in {**chunks, "Data": data}.items():
            info.add_text(key, value)
        with Image.open(source) as image:
            image = image.convert("RGB")
            if scribble:
                ImageDraw.Draw(image).rectangle((100, 100, 400, 300), fill="black")
            image.save(path, pnginfo=info)
        return path

    other_numbers = json.dumps({**json.loads(chunks["Data"]), "layers": []})
    stale = draw_figures.stale_reasons(save(tmp_path / "a.png", other_numbers, False), source)
    assert "data it shows changed (layers)" in stale[0]
    assert "picture changed" in draw_figures.stale_reasons(save(tmp_path / "b.png", chunks["Data"], True), source)[0]
    assert draw_figures.stale_reasons(save(tmp_path / "c.png", chunks["Data"], False), source) == []
    assert draw_figures.stale_reasons(tmp_path / "missing.png", source)


def test_lora_counts_agree_with_the_estimator():
    from helpers import estimate

    d = draw_figures.lora_data()
    q_proj = d["layers"][0]
    assert (q_proj["d"], q_proj["k"], q_proj["r"], q_proj["lora"], q_proj["full"]) == (576, 576, 32, 36_864, 331_776)
    for row, config in zip(d["models"], [draw_figures.SMOLLM2_135M, draw_figures.INTERNLM2_CHAT_1_8B]):
        assert row["lora"] == estimate._lora_params(estimate.shape_from_config(config), row["r"])


def test_chat_template_labels_are_minus_100_exactly_on_the_prompt(tiny_model):
    from helpers import chat

    d = draw_figures.chat_template_data(str(tiny_model))
    labels = [t["label"] for t in d["tokens"]]
    trained = [i for i, label in enumerate(labels) if label != -100]
    assert d["prompt"] == chat.build_prompt(draw_figures.TEMPLATE, draw_figures.QUESTION)
    assert trained == list(range(trained[0], len(labels) - 1))  # the answer and its <|im_end|>; not the final "\n"
    assert d["tokens"][trained[-1]]["text"] == "<|im_end|>" and d["tokens"][trained[-1]]["special"]
