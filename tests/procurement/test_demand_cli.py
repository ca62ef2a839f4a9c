"""``portal demand board|requests``."""

from __future__ import annotations

from tests.procurement.demand_support import build


def test_board_and_requests(app, runner, make_org, make_product):
    world = build(app, make_org, make_product)
    board = runner.invoke(args=["demand", "board"])
    assert board.exit_code == 0, board.output
    lines = board.output.splitlines()
    assert lines[0].startswith("cad-suite\tpressure 10\twaitlisted 2\t10d\tseat requests 1\t")
    assert "product requests 2 (7 seats)\treserved 5/5\tassigned 2\ttrend 5 1 5 5 flat" in lines[0]
    by_name = runner.invoke(args=["demand", "board", "--sort", "name"]).output.splitlines()
    assert [line.split("\t")[0] for line in by_name] == ["cad-suite", "no-pool", "secure-mail"]
    assert runner.invoke(args=["demand", "board", "--sort", "loud"]).exit_code == 2

    requests = runner.invoke(args=["demand", "requests"]).output.splitlines()
    assert requests[0] == f"#{world.r4}\topen\torg-b\tAtlas GIS\tAcme-Soft\t6 seats"
    assert requests[2].endswith(f"merged into #{world.r1}")
    declined = runner.invoke(args=["demand", "requests", "--state", "declined"])
    assert declined.output.splitlines() == [
        f"#{world.r3}\tdeclined\torg-b\tCAD Suite\tAcme-Soft\t10 seats"
    ]
    assert runner.invoke(args=["demand", "requests", "--state", "lost"]).exit_code == 2
