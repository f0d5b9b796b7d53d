from pathlib import Path

import pytest

SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "dpu_data.csv"


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    if not SHARED_SAMPLE.is_file():
        pytest.fail(f"the real sample data is expected at {SHARED_SAMPLE} (../shared beside the "
                    "checkout)")
    return SHARED_SAMPLE
