"""The model zoo page as a clinician uses it: find a network among the cards, see whether its ImageNet weights are
on this server, open its layers for one of their datasets, and see which layers a training phase would freeze."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.test_walkthrough import log_in, shot
from tests.factories import ready_dataset
from workers.engine.zoo.registry import MODELS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ENGINE_MS = 60_000  # a new network or size: the server asks the engine in a child process (a torch import, seconds)


@pytest.fixture
def weights_folder(settings, tmp_path, monkeypatch):
    """A weights folder holding ResNet-18's ImageNet file only (its name is what the page checks), and an empty torch cache."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / MODELS["resnet18"].weights[0].filename).write_bytes(b"not read by the page")
    settings.PRETRAINED_WEIGHTS_DIR = folder
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return folder


def test_the_zoo_filters_cards_and_shows_a_networks_layers_for_a_dataset(page, live_server, clinician, weights_folder):
    from backend.projects.models import Project

    project = Project.objects.create(owner=clinician, name="Chest")
    ready_dataset(project, per_class=3, name="X-rays")  # one channel, 64×64, two classes
    log_in(page, live_server.url)
    page.get_by_role("link", name="Model zoo").click()
    cards = page.locator(".zoo-card")
    expect(cards).to_have_count(len(MODELS))
    expect(page.locator("#zoo-count")).to_have_text(f"{len(MODELS)} of {len(MODELS)} networks")
    shot(page, "m1-zoo-cards")

    page.fill("#zoo-search", "resnet")
    # ResNet-18 and -50, the 3D ResNet-18, ResNet-50 and SE-ResNet-50, and the 2D and 3D SegResNet
    expect(cards).to_have_count(7)
    page.select_option("#zoo-dims", "3")
    expect(cards).to_have_count(4)
    expect(page.locator('.zoo-card[data-name="resnet18_3d"] .badge').first).to_have_text("3D")
    expect(page.locator('.zoo-card[data-name="resnet18_3d"]')).to_contain_text("Volumes of 1×1×1 or larger voxels")
    page.fill("#zoo-search", "nothing like this")
    expect(cards).to_have_count(0)
    expect(page.locator("#zoo-empty")).to_be_visible()
    page.fill("#zoo-search", "resnet")
    page.select_option("#zoo-dims", "2")
    expect(cards).to_have_count(3)  # ResNet-18, ResNet-50 and the 2D SegResNet
    resnet18 = page.locator('.zoo-card[data-name="resnet18"]')
    expect(resnet18).to_contain_text("11.7 M parameters")
    expect(resnet18.locator(".weights-ok")).to_have_text("on this server")
    expect(page.locator('.zoo-card[data-name="resnet50"] .weights-missing')).to_contain_text("not on this server")

    resnet18.get_by_role("button", name="Show its layers").click()
    page.select_option('#summary-form select[name="dataset"]', label="X-rays (1 channel, 64×64 px, 2 classes)")
    facts = page.locator("#summary-facts")
    expect(facts).to_contain_text("Input 1 × 64 × 64 — X-rays; output: 2 class scores", timeout=ENGINE_MS)
    expect(facts).to_contain_text("11.2 M parameters: all learn")
    layer4 = page.locator("tr.block-row", has_text="layer4")
    expect(layer4.locator("td").nth(2)).to_have_text("512 × 2 × 2")
    expect(page.locator("tr.frozen")).to_have_count(0)

    page.locator('input[name="frozen_blocks"]').fill("2")
    expect(page.locator("#frozen-output")).to_have_text("Blocks 1 to 2 of 6 frozen; the rest learn.")
    expect(page.locator("tr.block-row.frozen")).to_have_count(2)
    expect(page.locator("tr.layer-row.frozen").first.locator("td").first).to_have_text("conv1")
    expect(page.locator("tr.layer-row.frozen", has_text="layer2.0.conv1")).to_have_count(0)
    expect(facts).to_contain_text("11.0 M learn, 151,232 frozen")
    shot(page, "m1-zoo-frozen-blocks")

    page.get_by_label("Train the head only").check()
    expect(page.locator("tr.block-row.frozen")).to_have_count(5)
    expect(page.locator("tr.block-row:not(.frozen) td").first).to_have_text(re.compile(r"Head fc$"))

    page.fill("#zoo-search", "inception")
    page.locator('.zoo-card[data-name="inception_v3"]').get_by_role("button", name="Show its layers").click()
    expect(page.locator('[data-error-for="dataset"]')).to_contain_text("Inception-v3 takes images of at least 75×75 pixels",
                                                                       timeout=ENGINE_MS)
    page.fill('#summary-form input[name="input_size"]', "299")
    expect(facts).to_contain_text("Input 1 × 299 × 299 (resized from 64 × 64 inside the network)", timeout=ENGINE_MS)
    expect(page.locator('[data-error-for="dataset"]')).to_be_empty()


def test_a_network_named_in_the_address_opens_on_its_layers_and_the_page_has_an_icon(page, live_server, clinician):
    """The run form's link (?model=): the cards, then the network's table with its counts, and nothing left saying
    it is still working. The icon the page links is served, and so is /favicon.ico (the browser's own ask)."""
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/zoo/?model=resnet18")
    expect(page.locator(".zoo-card")).to_have_count(len(MODELS))
    expect(page.locator('.zoo-card[data-name="resnet18"]')).to_have_class(re.compile(r"\bselected\b"))
    facts = page.locator("#summary-facts")
    expect(facts).to_contain_text("11.2 M parameters: all learn", timeout=ENGINE_MS)  # 1 channel, 2 classes: 11,171,266
    expect(facts).to_contain_text("Input 1 × 64 × 64; output: 2 class scores")
    expect(page.locator("#summary-state")).to_be_empty()
    expect(page.locator("tr.block-row")).to_have_count(6)

    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon and page.request.get(live_server.url + icon).ok
    assert page.request.get(f"{live_server.url}/favicon.ico").ok


def test_a_3d_network_shows_its_layers_for_volumes(page, live_server, clinician):
    """A 3D network's table: the depth field appears, and the facts speak of volumes."""
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/zoo/?model=small_cnn_3d")
    facts = page.locator("#summary-facts")
    expect(facts).to_contain_text("Input 1 × 64 × 64 × 64; output: 2 class scores", timeout=ENGINE_MS)
    expect(facts).to_contain_text("multiply-adds per volume")
    depth = page.locator('#summary-form input[name="depth"]')
    expect(depth).to_be_visible()
    depth.fill("16")
    expect(facts).to_contain_text("Input 1 × 16 × 64 × 64", timeout=ENGINE_MS)
    expect(page.locator("tr.block-row", has_text="block1").locator("td").nth(2)).to_have_text("16 × 8 × 32 × 32")
    shot(page, "m1-zoo-3d")
    page.locator('.zoo-card[data-name="small_cnn"]').get_by_role("button", name="Show its layers").click()
    expect(depth).to_be_hidden()
    expect(facts).to_contain_text("Input 1 × 64 × 64; output", timeout=ENGINE_MS)
