"""The pure helpers of bench/desk.py: the phone query it times must reach the account it
was made from, and the plan summary must name every scan (it is how the benchmark says
that no index serves a query)."""

from __future__ import annotations

from bench.desk import _phone_as_read, _plan_nodes
from sync.desk_service.search import normalise_digits


def test_a_phone_read_out_with_plus7_and_dashes_normalises_to_the_stored_account():
    spoken = _phone_as_read("9161234567")
    assert spoken == "+7 916 123-45-67"
    assert normalise_digits(spoken) == "9161234567"


def test_the_plan_summary_lists_every_scan_depth_first_with_its_index():
    plan = {"Node Type": "Limit", "Plans": [
        {"Node Type": "Sort", "Plans": [
            {"Node Type": "Bitmap Heap Scan", "Plans": [
                {"Node Type": "Bitmap Index Scan", "Index Name": "pk_payments"}]},
            {"Node Type": "Seq Scan", "Parallel Aware": True, "Actual Rows": 25,
             "Actual Loops": 2, "Rows Removed by Filter": 1000},
            {"Node Type": "Index Scan", "Index Name": "ix_payments_created_ms",
             "Actual Rows": 50, "Actual Loops": 1, "Rows Removed by Filter": 93_508}]}]}
    assert _plan_nodes(plan) == [
        "Bitmap Heap Scan", "Bitmap Index Scan using pk_payments",
        "Parallel Seq Scan (read ≈2 050 rows, kept ≈50)",
        "Index Scan using ix_payments_created_ms (read 93 558 rows, kept 50)"]
    assert _plan_nodes({"Node Type": "Result"}) == []
