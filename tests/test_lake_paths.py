"""Lake paths that Delta, Spark and delta-rs all accept and that compare equal: a local
directory however it is spelled (plain, relative, ``file:/``, ``file:///``,
``file://localhost/``), object stores (``s3://`` is ``s3a://`` for Hadoop, ``abfss://`` as
given) and Unity Catalog names (delta-spark only)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from echo.errors import LakeError
from echo.lake import open_lake
from echo.lake.base import is_local, local_path, normalize_root, spark_uri
from echo.lake.tables import EVENTS, SESSIONS

pytest.importorskip("deltalake")


def local_forms(d: Path) -> dict[str, str]:
    """One directory, every local spelling a user may pass as ``--lake``."""
    return {
        "plain": str(d),
        "relative": os.path.relpath(d),
        "file-one-slash": f"file:{d}",
        "file-three-slashes": d.as_uri(),
        "file-localhost": f"file://localhost{d}",
    }


FORMS = ["plain", "relative", "file-one-slash", "file-three-slashes", "file-localhost"]


# -- the spellings (pure) ------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_every_local_spelling_is_the_same_lake_root(form: str, tmp_path: Path) -> None:
    d = tmp_path / "lake"
    uri = local_forms(d)[form]
    assert is_local(uri)
    assert normalize_root(uri) == local_path(uri) == str(d)
    assert spark_uri(uri) == f"file:{d}"  # Hadoop's qualified form: one slash


def test_a_file_uri_keeps_escaped_characters_decoded_once(tmp_path: Path) -> None:
    d = tmp_path / "my lake"
    assert d.as_uri().endswith("my%20lake")
    assert normalize_root(d.as_uri()) == str(d)
    assert spark_uri(d.as_uri()) == f"file:{d}"


def test_a_file_uri_naming_another_host_is_refused() -> None:
    with pytest.raises(LakeError, match="with a host"):
        normalize_root("file://fileserver/share/lake")


@pytest.mark.parametrize(
    ("given", "root", "for_spark"),
    [
        ("s3://bucket/lake/", "s3://bucket/lake", "s3a://bucket/lake"),
        ("s3a://bucket/lake", "s3a://bucket/lake", "s3a://bucket/lake"),
        (
            "abfss://c@acct.dfs.core.windows.net/lake/",
            "abfss://c@acct.dfs.core.windows.net/lake",
            "abfss://c@acct.dfs.core.windows.net/lake",
        ),
        ("gs://bucket/lake", "gs://bucket/lake", "gs://bucket/lake"),
    ],
    ids=["s3", "s3a", "abfss", "gs"],
)
def test_object_store_roots_keep_their_scheme_for_delta_rs_and_s3a_for_spark(
    given: str, root: str, for_spark: str
) -> None:
    assert not is_local(given)
    assert normalize_root(given) == root
    assert spark_uri(given) == for_spark


def test_a_unity_catalog_name_is_not_a_path() -> None:
    assert normalize_root("uc:main.echo") == "uc:main.echo" and not is_local("uc:main.echo")
    with pytest.raises(LakeError, match="Unity Catalog"):
        spark_uri("uc:main.echo")


# -- what Delta checks, on Spark's own code ----------------------------------------------------
def _qualified_location(spark: Any, location: str) -> str:
    """The location Spark hands Delta's catalog for ``DeltaTableBuilder.location(x)``: Spark's
    DataSourceV2Strategy qualifies it with ``CatalogUtils.makeQualifiedDBObjectPath``."""
    jvm = spark.sparkContext._jvm
    utils = jvm.org.apache.spark.sql.catalyst.catalog.CatalogUtils
    warehouse = spark.conf.get("spark.sql.warehouse.dir")
    return str(
        utils.makeQualifiedDBObjectPath(
            warehouse, location, spark.sparkContext._jsc.hadoopConfiguration()
        )
    )


@pytest.mark.parametrize("form", FORMS)
def test_the_spark_uri_passes_deltas_create_table_location_check(
    spark: Any, tmp_path: Path, form: str
) -> None:
    # DeltaCatalog.createDeltaTable refuses `delta.`<ident>`` with a LOCATION that does not
    # end with <ident> (DELTA_AMBIGUOUS_PATHS_IN_CREATE_TABLE)
    ident = spark_uri(local_forms(tmp_path / "lake" / "silver" / "sessions")[form])
    assert _qualified_location(spark, ident).endswith(ident)


def test_the_old_three_slash_form_fails_deltas_location_check(spark: Any, tmp_path: Path) -> None:
    ident = (tmp_path / "t").as_uri()  # what spark_uri gave before: delta-io/delta#1523
    assert not _qualified_location(spark, ident).endswith(ident)


@pytest.mark.parametrize(
    "uri", ["s3a://bucket/lake/silver/sessions", "abfss://c@acct.dfs.core.windows.net/lake/t"]
)
def test_object_store_uris_pass_deltas_location_check(spark: Any, uri: str) -> None:
    assert _qualified_location(spark, spark_uri(uri)).endswith(spark_uri(uri))


# -- every spelling on each backend -----------------------------------------------------------
def test_a_table_written_under_one_spelling_is_read_under_every_other(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    from deltalake import DeltaTable

    monkeypatch.chdir(tmp_path)
    d = tmp_path / "lake"
    forms = local_forms(d)
    first = open_lake(spark, forms["file-three-slashes"], backend)
    first.check_root(create=True)
    row = ("u/1", "u", 1, 2, 1, 1, 0.0, 0, date(1970, 1, 1))
    first.append(SESSIONS, spark.createDataFrame([row], SESSIONS.schema))
    for form, uri in forms.items():
        lake = open_lake(spark, uri, backend)
        lake.check_root(create=False)
        assert lake.root == str(d) and lake.path(SESSIONS) == str(d / "silver" / "sessions"), form
        assert [tuple(r) for r in lake.read(SESSIONS).collect()] == [row], form
    again = open_lake(spark, forms["file-one-slash"], backend)
    again.append(
        SESSIONS,
        spark.createDataFrame(
            [("v/1", "v", 1, 2, 1, 1, 0.0, 1, date(1970, 1, 1))], SESSIONS.schema
        ),
    )
    assert sorted(DeltaTable(str(d / "silver" / "sessions")).to_pandas().session_id) == [
        "u/1",
        "v/1",
    ]
    assert sorted(p.name for p in d.iterdir()) == ["_echo", "silver"]  # one lake, one place


@pytest.mark.delta_spark
def test_delta_spark_identifies_object_store_tables_by_their_hadoop_uri(spark: Any) -> None:
    from echo.lake.delta_spark import DeltaSparkLake

    # naming only (no I/O): DeltaSparkLake is built directly, so this runs without the jars
    s3 = DeltaSparkLake(spark, "s3://bucket/lake/")
    assert s3.root == "s3://bucket/lake"
    assert s3.ident(EVENTS) == "delta.`s3a://bucket/lake/bronze/events`"
    abfss = DeltaSparkLake(spark, "abfss://c@acct.dfs.core.windows.net/lake")
    assert (
        abfss.ident(SESSIONS) == "delta.`abfss://c@acct.dfs.core.windows.net/lake/silver/sessions`"
    )


def test_delta_rs_keeps_object_store_uris_as_given(spark: Any) -> None:
    from echo.lake.delta_rs import DeltaRsLake

    lake = DeltaRsLake(spark, "s3://bucket/lake/")
    assert lake.path(EVENTS) == "s3://bucket/lake/bronze/events"  # delta-rs reads s3:// itself
    assert (
        spark_uri(lake.path(EVENTS)) == "s3a://bucket/lake/bronze/events"
    )  # Spark's staging writes
