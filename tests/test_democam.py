import time

import pytest
import requests
import yaml

from tcv_helpers.data.democam import DemoCameras
from tcv_helpers.imaging import decode_image, is_blank


def test_cameras_publish_refreshing_jpegs(tmp_path):
    with DemoCameras(cameras=2, refresh=0.3) as demo:
        url = demo.url("demo-00")
        first = requests.get(url, timeout=5)
        assert first.status_code == 200 and first.headers["Content-Type"] == "image/jpeg"
        assert decode_image(first.content).size == (480, 270)
        same = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
        assert same.status_code in (304, 200)
        time.sleep(0.35)
        newer = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
        assert newer.status_code == 200 and newer.content != first.content
        offline = requests.get(demo.url("demo-offline"), timeout=5)
        assert is_blank(decode_image(offline.content))
        missing = requests.get(demo.url("nope"), timeout=5)
        assert missing.status_code == 404 and missing.text.startswith("<html>")
        assert "Disallow" in requests.get(demo.base_url + "/robots.txt", timeout=5).text
        path = demo.write_camera_list(tmp_path / "cams.yaml")
        listed = yaml.safe_load(path.read_text())["cameras"]
        assert [c["id"] for c in listed] == ["demo-00", "demo-01", "demo-offline"]
        assert all(c["url"].startswith("http://127.0.0.1:") for c in listed)
        assert len(demo.requests) == 6
    with pytest.raises(RuntimeError, match="not running"):
        _ = demo.base_url


def test_bad_arguments():
    with pytest.raises(ValueError):
        DemoCameras(cameras=0)
