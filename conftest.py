"""Suite-wide options."""


def pytest_addoption(parser):
    parser.addoption(
        "--rtzr-live",
        action="store_true",
        default=False,
        help="run contract_tests/rtzr against the real RTZR service "
        "(needs RTZR_CLIENT_ID and RTZR_CLIENT_SECRET; uses paid minutes)",
    )
