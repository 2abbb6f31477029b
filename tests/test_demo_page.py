"""The demo's page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, through Selenium): digits
drawn with pointer events are read, every activation tile is painted, a picture can be uploaded, a random test image
shows its true label, and the page asks no host but its server; with a LeNet1998 checkpoint it shows F6's 84 outputs
beside the ten class bitmaps, with each class's distance.

Where no Chromium can be had these tests skip saying why, unless REQUIRE_BROWSER_TESTS=1 (``.ci/run`` sets it): then
that is a failure. Run with ``-s`` to see what the page read; the screenshots are written beside each test's files.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import MNIST

from src.training.checkpoints import load_checkpoint
from tests.conftest import TrainedRun
from tests.helpers import DemoServer

pytestmark = pytest.mark.browser
REQUIRED = os.environ.get("REQUIRE_BROWSER_TESTS") == "1"

# Strokes as a learner draws them, in pad pixels (the pad is 280x280): lists of points, one list per stroke.
DRAWINGS = {
    1: [[(140, 50), (140, 230)]],
    7: [[(80, 60), (200, 60), (120, 230)]],
    0: [[(140, 50), (90, 90), (85, 170), (140, 230), (195, 170), (190, 90), (140, 50)]],
    4: [[(170, 50), (90, 160), (200, 160)], [(170, 50), (170, 235)]],
}


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    if missing:
        reason = f"no {' or '.join(missing)} on PATH (Debian: apt-get install chromium chromium-driver)"
        if REQUIRED:
            pytest.fail(f"REQUIRE_BROWSER_TESTS=1 but {reason}")
        pytest.skip(reason)
    return chromium, driver


@contextmanager
def browser_on(ckpt: Path, folder: Path) -> Iterator[tuple[object, DemoServer]]:
    """``python -m src.demo`` serving ``ckpt``, and a headless Chromium with its page loaded."""
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1900"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    with DemoServer(f"ckpt_path={ckpt}", "port=0", f"hydra.run.dir={folder}") as server:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(server.url + "/")
            wait_for(driver, "return document.body.dataset.ready === '1'")
            yield driver, server
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def page(mnist_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, DemoServer]]:
    with browser_on(mnist_run.ckpt, tmp_path_factory.mktemp("demo_page")) as opened:
        yield opened


@pytest.fixture(scope="module")
def page1998(
    lecun1998_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[object, DemoServer]]:
    with browser_on(lecun1998_run.ckpt, tmp_path_factory.mktemp("demo_page1998")) as opened:
        yield opened


def wait_for(driver, script: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"the page never satisfied: {script}")


def draw(driver, strokes: list[list[tuple[int, int]]]) -> None:
    """Each stroke as a pen would: pointer down, moves every few pixels, pointer up (W3C pointer actions)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By

    pad = driver.find_element(By.ID, "pad")
    scale_x, scale_y = pad.size["width"] / 280, pad.size["height"] / 280
    for stroke in strokes:
        actions = ActionBuilder(driver, mouse=PointerInput("mouse", "pen"), duration=5)
        points = [stroke[0]]
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            steps = max(2, int(np.hypot(x1 - x0, y1 - y0) / 8))
            points += [(x0 + t * (x1 - x0), y0 + t * (y1 - y0)) for t in np.linspace(0, 1, steps)[1:]]
        # offsets from the pad's centre, as WebDriver counts them
        offsets = [(round((x - 140) * scale_x), round((y - 140) * scale_y)) for x, y in points]
        actions.pointer_action.move_to(pad, *offsets[0]).pointer_down()
        for dx, dy in offsets[1:]:
            actions.pointer_action.move_to(pad, dx, dy)
        actions.pointer_action.pointer_up()
        actions.perform()


def settled_answer(driver) -> dict:
    """The answer on screen once the drawing's last request has come back."""
    time.sleep(0.1)
    wait_for(driver, "return document.body.dataset.busy === ''")
    return driver.execute_script(
        """return {index: document.getElementById('prediction').dataset.index,
                   name: document.getElementById('prediction-name').textContent,
                   message: document.getElementById('message').textContent}"""
    )


def painted_tiles(driver) -> list[dict]:
    """Per activation tile (and filter): whether every pixel is opaque (painted) and how many colours it shows."""
    return driver.execute_script(
        """return [...document.querySelectorAll('#stage-list canvas')].map((c) => {
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let opaque = true; const colours = new Set();
             for (let i = 0; i < d.length; i += 4) { if (d[i + 3] !== 255) opaque = false; colours.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); }
             return {title: c.title, opaque: opaque, colours: colours.size};
           });"""
    )


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def clear(driver) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "clear").click()
    wait_for(driver, "return document.getElementById('prediction-name').textContent === 'nothing drawn'")


def test_drawn_digits_are_read_and_every_stage_is_painted(page, tmp_path: Path):
    driver, server = page
    read = {}
    for digit, strokes in DRAWINGS.items():
        clear(driver)
        draw(driver, strokes)
        answer = settled_answer(driver)
        assert answer["message"] == "", answer
        read[digit] = int(answer["index"])
        driver.save_screenshot(str(tmp_path / f"drawn_{digit}.png"))
    print(f"\ndrawn -> read: {read}; screenshots in {tmp_path}")
    assert read[1] == 1 and read[7] == 7
    assert sum(read[d] == d for d in read) >= len(read) - 1

    tiles = painted_tiles(driver)
    # conv1: 6 filters + 6 maps, pool1 6, conv2 16, pool2 16, fc1 1 strip, fc2 1 strip
    assert len(tiles) == 6 + 6 + 6 + 16 + 16 + 1 + 1
    assert all(t["opaque"] for t in tiles), [t["title"] for t in tiles if not t["opaque"]]
    # a real drawing lights up most maps: uniform tiles (a ReLU map that stays at zero) are the exception
    assert sum(t["colours"] > 1 for t in tiles) >= 0.75 * len(tiles), tiles
    # what the network saw: the prepared 28x28 input, painted
    seen = driver.execute_script(
        "const d = document.getElementById('input').getContext('2d').getImageData(0, 0, 28, 28).data;"
        "let lit = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 128) lit++; return lit;"
    )
    assert 30 < seen < 400


def test_a_random_test_image_shows_its_true_label(page, mnist_run: TrainedRun, data_dir: Path):
    """Either button shows a test image with its true label and the model's own answer for it: any image for "random"
    (which the model may get wrong), one the model gets wrong for "random-wrong"."""
    from selenium.webdriver.common.by import By

    driver, _ = page
    loaded = load_checkpoint(mnist_run.ckpt)
    images, targets = loaded.test_split(data_dir)
    with torch.inference_mode():
        answers = torch.cat([loaded.net.eval()(batch).argmax(dim=1) for batch in images.split(1000)])
    for button, wrong in (("random", False), ("random-wrong", True)):
        clear(driver)
        driver.find_element(By.ID, button).click()
        wait_for(driver, "return document.getElementById('truth').textContent.startsWith('True class')")
        source = driver.find_element(By.ID, "source").text  # "Test image #<index> of the mnist test set."
        index = int(source.split("#")[1].split()[0])
        label = int(driver.find_element(By.ID, "truth").get_attribute("data-label"))
        assert label == int(targets[index])
        predicted = int(driver.find_element(By.ID, "prediction").get_attribute("data-index"))
        assert predicted == int(answers[index]), (button, index, predicted, int(answers[index]))
        if wrong:
            assert predicted != label, (button, index, predicted, label)


def test_an_uploaded_photo_of_a_digit_on_paper_is_read(page, data_dir: Path, tmp_path: Path):
    """A "photo": a test digit dark on light paper, large, off-centre, with some noise."""
    from selenium.webdriver.common.by import By

    driver, _ = page
    test_set = MNIST(str(data_dir), train=False)
    digit = np.asarray(Image.fromarray(test_set.data[1].numpy()).resize((300, 300), Image.Resampling.BICUBIC))
    paper = np.full((600, 800), 225.0) + np.random.default_rng(0).normal(0, 6, (600, 800))
    paper[100:400, 350:650] -= digit * 0.8
    photo = tmp_path / "photo.jpg"
    Image.fromarray(paper.clip(0, 255).astype(np.uint8)).save(photo, quality=85)
    clear(driver)
    driver.find_element(By.ID, "upload").send_keys(str(photo))
    wait_for(driver, "return document.getElementById('prediction').dataset.index !== ''")
    assert int(driver.find_element(By.ID, "prediction").get_attribute("data-index")) == int(test_set.targets[1])


def test_the_page_asks_no_host_but_its_server(page):
    driver, server = page
    urls = requested_urls(driver)
    assert any(u.endswith("/api/model") for u in urls) and any(u.endswith("/api/predict") for u in urls)
    foreign = [u for u in urls if not u.startswith(server.url + "/") and not u.startswith(("data:", "blob:"))]
    assert foreign == []
    # nothing the page loads was refused by its Content-Security-Policy (it would be, had it named another host)
    console = [e["message"] for e in driver.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Refused" in m], console


def test_a_picture_too_large_is_refused_with_its_message_on_the_page(page, tmp_path: Path):
    from selenium.webdriver.common.by import By

    driver, _ = page
    big = tmp_path / "big.png"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (2200, 2200, 3), dtype=np.uint8)).save(buffer, "PNG")
    big.write_bytes(buffer.getvalue())  # ~14.5 MB of noise: over the 10 MB body limit
    assert big.stat().st_size > 10_000_000
    clear(driver)
    driver.find_element(By.ID, "upload").send_keys(str(big))
    message = wait_for(driver, "return document.getElementById('message').textContent")
    assert "more than the 10,000,000 allowed" in message


def test_the_bench_sends_a_png_laid_out_as_this_browser_writes_its_canvas(page, data_dir: Path):
    """``python -m src.bench.demo`` times the PNG the page sends: the same pixels put on a canvas here and written by
    ``canvas.toBlob``, as the page writes its pad, give the bench's filters row by row and (within a tenth) its size,
    which set the time to decode it."""
    import base64

    from src.bench.demo import canvas_body

    driver, _ = page
    body = canvas_body(MNIST(str(data_dir), train=False).data[0].numpy())
    rgba = np.asarray(Image.open(io.BytesIO(body)).convert("RGBA"))
    url = driver.execute_async_script(
        """const [pixels, side, done] = arguments;
           const canvas = document.createElement('canvas');
           canvas.width = canvas.height = side;
           const context = canvas.getContext('2d');
           const image = context.createImageData(side, side);
           const raw = atob(pixels);
           for (let i = 0; i < raw.length; i++) image.data[i] = raw.charCodeAt(i);
           context.putImageData(image, 0, 0);
           canvas.toBlob((blob) => { const r = new FileReader(); r.onload = () => done(r.result); r.readAsDataURL(blob); },
                         'image/png');""",
        base64.b64encode(rgba.tobytes()).decode("ascii"),
        rgba.shape[0],
    )
    browser = base64.b64decode(url.split(",", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(browser)).convert("RGBA")), rgba)
    assert row_filters(body) == row_filters(browser), (set(row_filters(body)), set(row_filters(browser)))
    assert abs(len(body) - len(browser)) <= 0.1 * len(browser), (len(body), len(browser))


def row_filters(png: bytes) -> list[int]:
    """The filter type of each row of an 8-bit RGBA PNG (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    import struct
    import zlib

    at, data, width = 8, b"", 0
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, payload = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", payload[:4])[0]
        elif kind == b"IDAT":
            data += payload
        at += 12 + length
    raw = zlib.decompress(data)
    stride = 1 + 4 * width
    return list(raw[::stride])


def test_a_lenet5_checkpoint_shows_no_rbf_panel(page):
    from selenium.webdriver.common.by import By

    driver, _ = page
    clear(driver)
    draw(driver, DRAWINGS[1])
    settled_answer(driver)
    assert not driver.find_element(By.ID, "rbf-panel").is_displayed()
    assert not driver.find_element(By.ID, "rubbish").is_displayed()


def test_a_lenet1998_page_shows_f6_beside_the_ten_bitmaps_with_their_distances(
    page1998, lecun1998_run: TrainedRun, tmp_path: Path
):
    """A drawn digit: F6's 7x12 picture and the ten bitmaps, 84 painted cells each, F6's the answer's values and each
    bitmap the RBF layer's own; each class's distance as the API gives it, the nearest class highlighted."""
    from selenium.webdriver.common.by import By

    driver, server = page1998
    assert driver.find_element(By.ID, "rbf-panel").is_displayed()  # from the model's description, before any answer
    clear(driver)
    draw(driver, DRAWINGS[7])
    shown = settled_answer(driver)
    assert shown["message"] == "", shown
    driver.save_screenshot(str(tmp_path / "lenet1998_drawn_7.png"))
    print(f"\nLeNet1998 read the drawn 7 as {shown['name']}; screenshot in {tmp_path}")
    # The API's answer for the pad as it is: the page's last request sent these very pixels.
    api = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
           document.getElementById('pad').toBlob(async (blob) => {
             const r = await fetch('/api/predict', {method: 'POST', headers: {'Content-Type': 'image/png'}, body: blob});
             done(await r.json());
           }, 'image/png');"""
    )
    assert api["blank"] is False and int(shown["index"]) == api["prediction"]["index"]
    distances = api["rbf"]["distances"]
    nearest = int(np.argmin(distances))
    assert api["prediction"]["index"] == nearest

    # each class's bitmap: labelled with its class and its distance, the nearest highlighted
    figures = driver.execute_script(
        """return [...document.querySelectorAll('#bitmaps figure')].map((f) => ({
             index: Number(f.dataset.index), top: f.classList.contains('top'), shown: f.offsetWidth > 0,
             label: f.querySelector('strong').textContent, text: f.querySelector('.distance').textContent,
             distance: f.querySelector('.distance').dataset.distance}));"""
    )
    assert [f["index"] for f in figures] == list(range(10)) and all(f["shown"] for f in figures)
    assert [f["label"] for f in figures] == [str(i) for i in range(10)]
    assert [float(f["distance"]) for f in figures] == distances  # the API's numbers, exactly
    for f, y in zip(figures, distances):
        assert f["text"].startswith("y = ") and float(f["text"][4:]) == pytest.approx(y, abs=0.0051), (f, y)
    assert [f["index"] for f in figures if f["top"]] == [nearest]

    # F6's picture and the ten bitmaps: 7x12 canvases, every one of the 84 cells painted on one scale, -limit..limit
    cells = driver.execute_script(
        """return [...document.querySelectorAll('#rbf-panel canvas')].map((c) => {
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, reds = [];
             let opaque = 0;
             for (let i = 0; i < d.length; i += 4) { if (d[i + 3] === 255) opaque++; reds.push(d[i]); }
             return {id: c.id, width: c.width, height: c.height, opaque: opaque, reds: reds, shown: c.offsetWidth > 0};
           });"""
    )
    assert [c["id"] for c in cells] == ["f6"] + [""] * 10
    assert all((c["width"], c["height"], c["opaque"]) == (7, 12, 84) and c["shown"] for c in cells), cells

    def reds(values: np.ndarray) -> np.ndarray:  # the page's INK scale: white (255) at -limit, 29 at +limit
        limit = 1.7159
        q = np.clip(np.rint((values + limit) / (2 * limit) * 255), 0, 255)
        return 255 + (29 - 255) * q / 255

    f6 = np.array(api["rbf"]["f6"]).ravel()
    assert np.abs(np.array(cells[0]["reds"]) - reds(f6)).max() <= 1  # F6's own values, cell by cell
    centers = load_checkpoint(lecun1998_run.ckpt).net.classifier.output.centers.numpy()
    for c, center in zip(cells[1:], centers):
        assert np.abs(np.array(c["reds"]) - reds(center)).max() <= 1  # the RBF layer's bitmaps, ink and paper

    # the probability bars: the nearest class's fills its track as far as its probability (the ten leave the rubbish
    # its share)
    bar = driver.execute_script(
        """const li = document.querySelector('#bars li.top');
           return {index: Number(li.dataset.index), fill: li.querySelector('.fill').getBoundingClientRect().width,
                   track: li.querySelector('.track').getBoundingClientRect().width};"""
    )
    assert bar["index"] == nearest
    assert bar["fill"] == pytest.approx(api["probabilities"][nearest] * bar["track"], abs=2), bar
    assert driver.find_element(By.ID, "rubbish").is_displayed()
    assert driver.find_element(By.ID, "rubbish").text.startswith("rubbish (penalty j = 10)")
    tiles = painted_tiles(driver)  # C1's 6 filters and maps, S2 6, C3 16, S4 16, C5 a strip of 120, F6 of 84
    assert len(tiles) == 6 + 6 + 6 + 16 + 16 + 1 + 1 and all(t["opaque"] for t in tiles)
    assert sum("(Table I)" in t["title"] for t in tiles) == 16  # each C3 map names the S2 maps that feed it
    urls = requested_urls(driver)
    assert [u for u in urls if not u.startswith(server.url + "/") and not u.startswith(("data:", "blob:"))] == []
