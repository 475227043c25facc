"""The client installs alone: a fresh virtual environment, `pip install clients/python`, and a
platform's program in that environment's Python calling a real gateway over mutual TLS.

pip installs a copy of clients/python made in a temporary directory: building in place leaves
a `build/` directory whose stale files a later build would ship."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import start_world
from traffic import ORIGIN, TARGET, matter_pair

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent(
    """
    import asyncio, importlib.resources, importlib.util, json, sys

    from tongban_client import ClientConfig, NotFound, TongbanClient
    from tongban_client.api.v1 import application_pb2 as pb

    async def main(given):
        config = ClientConfig.mutual_tls(
            given["target"], ca=given["ca"], cert=given["cert"], key=given["key"]
        )
        async with TongbanClient(config) as client:
            resolved = await client.catalog.resolve(given["origin"], given["local"])
            submitted = await client.applications.submit(
                pb.SubmitApplicationRequest(
                    origin_region=given["origin"],
                    target_region=given["target_region"],
                    local_matter_code=given["local"],
                    applicant=pb.Applicant(
                        id_type=pb.ID_TYPE_CITIZEN_ID,
                        id_number="110105199003071239",
                        display_name="张三",
                    ),
                    materials=[
                        pb.Material(material_id=m, paper=pb.PaperMaterial(description=m))
                        for m in given["materials"]
                    ],
                )
            )
            try:
                await client.catalog.get_matter("000147021000")
                missing = ""
            except NotFound as error:
                missing = error.reason
        package = importlib.resources.files("tongban_client")
        return {
            "national": resolved.matter.code,
            "state": pb.ApplicationState.Name(submitted.application.state),
            "missing": missing,
            "typed": package.joinpath("py.typed").is_file()
            and package.joinpath("api/v1/application_pb2.pyi").is_file(),
            "absent": [
                name
                for name in ("gateway", "region_stubs", "asyncpg", "jwt", "prometheus_client")
                if importlib.util.find_spec(name) is not None
            ],
        }

    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
    """
)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new virtual environment holding the client and its dependencies only."""
    venv = tmp_path_factory.mktemp("venv")
    package = tmp_path_factory.mktemp("package") / "python"
    shutil.copytree(
        ROOT / "clients" / "python",
        package,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(package)],
        capture_output=True,
        text=True,
        check=False,
        cwd=venv,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


@pytest.mark.slow
async def test_the_installed_client_alone_calls_a_real_gateway(
    venv_python: Path, tmp_path: Path
) -> None:
    async with start_world(tmp_path, (ORIGIN, TARGET), tls=True) as world:
        assert world.pki is not None
        local, national = matter_pair(world)
        latest = world.gateway.registry.snapshot.latest()
        assert latest is not None
        given = {
            "target": world.gateway.address,
            "ca": str(world.pki.ca_cert),
            "cert": str(world.pki.regions[ORIGIN].cert),
            "key": str(world.pki.regions[ORIGIN].key),
            "origin": ORIGIN,
            "target_region": TARGET,
            "local": local,
            "materials": [m.id for m in latest.document.matters[national].materials if m.required],
        }
        process = await asyncio.create_subprocess_exec(
            str(venv_python),
            "-c",
            PROGRAM,
            json.dumps(given),
            cwd=tmp_path,  # not the repository: nothing of it on the path
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert (await world.stubs[TARGET].counters()).cases_created == 1
    assert json.loads(out) == {
        "national": national,
        "state": "APPLICATION_STATE_DELIVERED",
        "missing": "MATTER_NOT_FOUND",
        "typed": True,
        "absent": [],
    }
