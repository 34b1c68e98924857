"""A team's ZenML server: backed by the machine's MariaDB, the client connected to it, a run recorded there,
and that run's dashboard page rendered by headless Chromium.

Skips with the reason where MariaDB or Chromium is absent.
"""

from __future__ import annotations

import io
import re

import pytest

from tests.conftest import REPO, SAMPLE_DATA
from tests.dashboard import chromium_reason, render
from tests.services import mariadb_database, mariadb_reason, zenml_client_env, zenml_server

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(mariadb_reason() is not None, reason=mariadb_reason() or "")]
DEMO = str(REPO / "configs" / "demo.yaml")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(server URL, store URL) of a ZenML server on a fresh MariaDB database."""
    home = tmp_path_factory.mktemp("zenml-server")
    with mariadb_database("ed_zenml") as store, zenml_server(store, home / "zen", home / "server.log") as url:
        yield url, store


@pytest.mark.skipif(chromium_reason() is not None, reason=chromium_reason() or "")
def test_a_run_recorded_on_the_server_and_its_dashboard_page(server, zen, tmp_path):
    import pymysql
    from PIL import Image

    url, store = server
    client = zenml_client_env(url)
    lines = zen("init", extra_env=client).stdout
    assert "stack 'empathy-local': registered" in lines

    out = zen("run", "--config", DEMO, "--set", f"data.path={SAMPLE_DATA}", extra_env=client).stdout
    run_name = re.search(r"pipeline run: (\S+) \(completed\)", out).group(1)
    page = re.search(rf"ZenML dashboard: ({re.escape(url)}/projects/default/runs/([0-9a-f-]+))", out)
    assert page, out  # the summary links the run's page on the server

    # the run is in the server's database, not in a local store
    user, password, host, port, name = re.match(r"mysql://(\w+):(\w+)@([\d.]+):(\d+)/(\w+)", store).groups()
    with pymysql.connect(host=host, port=int(port), user=user, password=password, database=name) as db, db.cursor() as cur:
        cur.execute("SELECT status FROM pipeline_run WHERE name = %s", (run_name,))
        assert cur.fetchall() == (("completed",),)
        cur.execute("SELECT count(*) FROM step_run WHERE pipeline_run_id = %s", (page.group(2).replace("-", ""),))
        assert cur.fetchone()[0] == 12
    assert not list((tmp_path / "zen").rglob("zenml.db"))  # no local ZenML store was made

    text, png = render(url, page.group(1), "default", "", must_show=[run_name, "train_sft", "promote_model", "completed"])
    (tmp_path / "dashboard-run.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (1400, 900)
    colors = image.getcolors(maxcolors=1 << 20)
    background = max(colors)[0]
    # not blank: many colours, and a good part of the page is not the background (text, the DAG, the progress bar)
    assert len(colors) > 200 and 1 - background / (1400 * 900) > 0.05
    assert "Total Steps\n12" in text and "Completed\n12" in text
