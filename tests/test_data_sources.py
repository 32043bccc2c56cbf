"""Sources: the registry, every built-in source, layout parsers, bad annotations."""

from __future__ import annotations

import os

import pytest

from dsm_lightning.data.sources import (
    AnnotationError,
    FolderSource,
    HMDB51Source,
    KineticsCSVSource,
    ListSource,
    SourceSplits,
    SyntheticSource,
    UCF101Source,
    VideoRecord,
    VideoSource,
    create_source,
    drop_missing,
    list_sources,
    read_folder,
    read_hmdb51,
    read_kinetics_csv,
    read_list_files,
    read_ucf101,
    register_source,
    source_class,
)
from dsm_lightning.data.sources import base as registry


def touch(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return str(path)


def write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


def test_folder_layout_and_separate_test_tree(tmp_path):
    for cls in ("walk", "jump"):
        for i in range(2):
            touch(tmp_path / "train" / cls / f"{cls}{i}.mp4")
    touch(tmp_path / "train" / "walk" / "notes.txt")  # ignored: not a video extension
    touch(tmp_path / "test" / "jump" / "sub" / "a.webm")
    touch(tmp_path / "test" / "swim" / "b.avi")  # class unknown to the train tree
    result = read_folder(str(tmp_path / "train"), str(tmp_path / "test"))
    assert result.class_names == ["jump", "walk"]
    assert [(os.path.basename(r.path), r.label) for r in result.splits["train"]] == [
        ("jump0.mp4", 0), ("jump1.mp4", 0), ("walk0.mp4", 1), ("walk1.mp4", 1)]
    assert [(r.video_id, r.label) for r in result.splits["test"]] == [("jump/sub/a.webm", 0)]
    assert [(s.split, os.path.basename(s.item)) for s in result.skipped] == [("test", "b.avi")]
    assert "swim" in result.skipped[0].reason


def make_ucf(tmp_path, classind="1 Run\n2 Swim\n"):
    ann = tmp_path / "ucfTrainTestlist"
    write(ann / "classInd.txt", classind)
    write(ann / "trainlist01.txt", "Run/v_Run_g01_c01.avi 1\nSwim/v_Swim_g01_c01.avi 2\n"
          "Fly/v_Fly_g01_c01.avi 1\n\nRun/v_Run_g09_c01.avi 1\n")
    write(ann / "testlist01.txt", "Swim/v_Swim_g02_c01.avi\n")
    for rel in ("Run/v_Run_g01_c01.avi", "Swim/v_Swim_g01_c01.avi", "Swim/v_Swim_g02_c01.avi"):
        touch(tmp_path / rel)
    return ann


def test_ucf101_layout(tmp_path):
    make_ucf(tmp_path)
    result = read_ucf101(str(tmp_path), None, 1)
    assert result.class_names == ["Run", "Swim"]
    assert [(r.video_id, r.label) for r in result.splits["train"]] == [
        ("Run/v_Run_g01_c01.avi", 0), ("Swim/v_Swim_g01_c01.avi", 1), ("Run/v_Run_g09_c01.avi", 0)]
    assert [(r.video_id, r.label) for r in result.splits["test"]] == [("Swim/v_Swim_g02_c01.avi", 1)]
    assert "Fly" in result.skipped[0].reason  # unknown class name in the list
    checked = drop_missing(result)  # v_Run_g09 is listed but not on disk
    assert [r.video_id for r in checked.splits["train"]] == [
        "Run/v_Run_g01_c01.avi", "Swim/v_Swim_g01_c01.avi"]
    assert checked.skipped[-1].reason == "file not found"
    assert checked.skipped[-1].item.endswith("v_Run_g09_c01.avi")


@pytest.mark.parametrize(
    "classind, trainlist, match",
    [
        ("1 Run\nSwim\n", None, r"classInd.txt, line 2"),
        ("1 Run\n3 Swim\n", None, r"classInd.txt, line 2"),
        ("1 Run\n2 Swim\n", "Run/a.avi 1\nSwim/b.avi two\n", r"trainlist01.txt, line 2"),
        ("1 Run\n2 Swim\n", "Run/a.avi 2\n", r"trainlist01.txt, line 1: label 2 contradicts"),
    ],
)
def test_ucf101_malformed_names_file_and_line(tmp_path, classind, trainlist, match):
    ann = make_ucf(tmp_path, classind)
    if trainlist is not None:
        write(ann / "trainlist01.txt", trainlist)
    with pytest.raises(AnnotationError, match=match):
        read_ucf101(str(tmp_path), str(ann), 1)


def test_ucf101_missing_list_file(tmp_path):
    make_ucf(tmp_path)
    with pytest.raises(AnnotationError, match="trainlist02.txt: annotation file not found"):
        read_ucf101(str(tmp_path), None, 2)
    with pytest.raises(ValueError, match="split must be 1, 2 or 3"):
        read_ucf101(str(tmp_path), None, 4)


def test_hmdb51_layout_and_errors(tmp_path):
    ann = tmp_path / "testTrainMulti_7030_splits"
    write(ann / "wave_test_split1.txt", "w1.avi 1\nw2.avi 2\nw3.avi 0\n")
    write(ann / "clap_test_split1.txt", "c1.avi 2 \nc2.avi 1\n")
    write(ann / "clap_test_split2.txt", "c1.avi 1\n")
    result = read_hmdb51(str(tmp_path), None, 1)
    assert result.class_names == ["clap", "wave"]
    assert [(r.video_id, r.label) for r in result.splits["train"]] == [("clap/c2.avi", 0),
                                                                        ("wave/w1.avi", 1)]
    assert [(r.video_id, r.label) for r in result.splits["test"]] == [("clap/c1.avi", 0),
                                                                       ("wave/w2.avi", 1)]
    write(ann / "wave_test_split1.txt", "w1.avi 1\nw2.avi 3\n")
    with pytest.raises(AnnotationError, match=r"wave_test_split1.txt, line 2"):
        read_hmdb51(str(tmp_path), None, 1)
    with pytest.raises(AnnotationError, match="no '\\*_test_split3.txt' files"):
        read_hmdb51(str(tmp_path), None, 3)


def test_kinetics_csv_layout(tmp_path):
    csv = write(tmp_path / "k.csv", "label,youtube_id,time_start,time_end,split\n"
                "abseiling,aaa,10,20,train\n"
                "archery,bbb,0,10,train\n"
                "archery,ccc,5,15,val\n"
                "juggling,ddd,1,2,val\n"
                "abseiling,eee,3,13,train\n")
    touch(tmp_path / "videos" / "train" / "abseiling" / "aaa_000010_000020.mp4")
    touch(tmp_path / "videos" / "bbb.mkv")  # untrimmed: the segment is kept
    touch(tmp_path / "videos" / "val" / "ccc_000005_000015.mp4")
    result = read_kinetics_csv(str(tmp_path / "videos"), csv)
    assert result.class_names == ["abseiling", "archery"]
    train = result.splits["train"]
    assert [(os.path.basename(r.path), r.label) for r in train[:2]] == [
        ("aaa_000010_000020.mp4", 0), ("bbb.mkv", 1)]
    assert (train[1].start_sec, train[1].end_sec) == (0.0, 10.0)
    assert [r.video_id for r in result.splits["val"]] == ["ccc_000005_000015"]
    assert [s.reason for s in result.skipped] == ["unknown class 'juggling'"]
    checked = drop_missing(result)  # eee is not on disk
    assert len(checked.splits["train"]) == 2 and checked.skipped[-1].reason == "file not found"


def test_kinetics_csv_directory_and_errors(tmp_path):
    ann = tmp_path / "ann"
    write(ann / "train.csv", "label,youtube_id,time_start,time_end\nx,aaa,0,10\n")
    write(ann / "validate.csv", "label,youtube_id,time_start,time_end\nx,bbb,0,10\n")
    result = read_kinetics_csv(str(tmp_path), str(ann))
    assert sorted(result.splits) == ["train", "val"]
    write(ann / "train.csv", "label,youtube_id,time_start,time_end\nx,aaa,zero,10\n")
    with pytest.raises(AnnotationError, match=r"train.csv, line 2: bad time_start"):
        read_kinetics_csv(str(tmp_path), str(ann))
    bad = write(tmp_path / "bad.csv", "label,id,start\nx,1,2\n")
    with pytest.raises(AnnotationError, match=r"bad.csv, line 1: header lacks"):
        read_kinetics_csv(str(tmp_path), bad)
    with pytest.raises(AnnotationError, match="not found"):
        read_kinetics_csv(str(tmp_path), str(tmp_path / "missing.csv"))


def test_list_files_integer_and_named_labels(tmp_path):
    train = write(tmp_path / "train.txt", "a/1.webm 0\nb/my video.mp4 2\n# comment\n")
    test = write(tmp_path / "test.txt", "c/3.webm 1\nd/4.webm 7\n")
    result = read_list_files(str(tmp_path), train, None, test)
    assert result.class_names == ["0", "1", "2"]
    assert [(r.video_id, r.label) for r in result.splits["train"]] == [("a/1.webm", 0),
                                                                        ("b/my video.mp4", 2)]
    assert [r.label for r in result.splits["test"]] == [1]
    assert result.skipped[0].reason == "unknown class '7'"
    named = write(tmp_path / "named.txt", "x.mp4 dive\ny.mp4 flip\n")
    val = write(tmp_path / "val.txt", "z.mp4 flip\nw.mp4 twist\n")
    result = read_list_files(str(tmp_path), named, val)
    assert result.class_names == ["dive", "flip"]
    assert [r.label for r in result.splits["val"]] == [1]
    bad = write(tmp_path / "bad.txt", "x.mp4 1\nlonely\n")
    with pytest.raises(AnnotationError, match=r"bad.txt, line 2"):
        read_list_files(str(tmp_path), bad)


# ----------------------------------------------------------------------------- registry


@pytest.fixture
def layouts(tmp_path):
    """One tiny tree per built-in layout (empty files: parsers never decode)."""
    for cls in ("jump", "walk"):
        touch(tmp_path / "folder" / cls / f"{cls}.mp4")
        touch(tmp_path / "tests" / cls / f"{cls}_test.mp4")
    make_ucf(tmp_path / "ucf")
    hmdb = tmp_path / "hmdb" / "testTrainMulti_7030_splits"
    write(hmdb / "clap_test_split1.txt", "c1.avi 1\nc2.avi 2\n")
    write(hmdb / "wave_test_split1.txt", "w1.avi 1\nw2.avi 2\n")
    kinetics = write(tmp_path / "k.csv", "label,youtube_id,time_start,time_end,split\n"
                     "abseiling,aaa,10,20,train\narchery,bbb,0,10,val\n")
    train = write(tmp_path / "list" / "train.txt", "a.mp4 0\nb.mp4 1\n")
    test = write(tmp_path / "list" / "test.txt", "c.mp4 1\n")
    return {
        "folder": (dict(root=str(tmp_path / "folder")), ["jump", "walk"], {"train": 2}),
        "ucf101": (dict(root=str(tmp_path / "ucf")), ["Run", "Swim"], {"train": 3, "test": 1}),
        "hmdb51": (dict(root=str(tmp_path / "hmdb"), split=1), ["clap", "wave"],
                   {"train": 2, "test": 2}),
        "kinetics_csv": (dict(root=str(tmp_path), annotations=kinetics),
                         ["abseiling"], {"train": 1}),
        "list": (dict(root=str(tmp_path / "list"), annotations=train, test_annotations=test),
                 ["0", "1"], {"train": 2, "test": 1}),
        "synthetic": (dict(num_classes=2, videos_per_class=1, eval_videos_per_class=1,
                           num_frames=4, size=16, cache_dir=str(tmp_path / "synthetic")),
                      ["move_right", "move_left"], {"train": 2, "balanced_test_static": 2}),
    }


BUILT_IN = {"folder": FolderSource, "ucf101": UCF101Source, "hmdb51": HMDB51Source,
            "kinetics_csv": KineticsCSVSource, "list": ListSource, "synthetic": SyntheticSource}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_source_by_name(name, layouts):
    assert name in list_sources() and source_class(name) is BUILT_IN[name]
    kwargs, class_names, sizes = layouts[name]
    source = create_source(name, **kwargs, test_root=None)  # None: the default applies
    assert isinstance(source, BUILT_IN[name]) and source.name == name
    assert name in repr(source) or type(source).__name__ in repr(source)
    source.prepare()
    result = source.read()
    assert isinstance(result, SourceSplits) and result.class_names == class_names
    assert source.class_names() == class_names  # available without setup
    for split, count in sizes.items():
        assert len(result.splits[split]) == count, split
        assert all(isinstance(r, VideoRecord) for r in result.splits[split])


@pytest.mark.parametrize("name", ["ucf101", "hmdb51", "kinetics_csv", "list"])
def test_any_file_source_takes_a_separate_test_tree(name, layouts, tmp_path):
    kwargs, class_names, _ = layouts[name]
    test_dir = tmp_path / f"test_{name}"
    for cls in class_names:
        touch(test_dir / cls / "t.mp4")
    touch(test_dir / "unknown_class" / "u.mp4")
    result = create_source(name, **kwargs, test_root=str(test_dir)).read()
    assert [r.label for r in result.splits["test"]] == list(range(len(class_names)))
    assert result.skipped[-1].reason == "unknown class 'unknown_class'"


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown source 'nope'; registered sources: folder"):
        create_source("nope")
    with pytest.raises(ValueError, match="source 'list' needs annotations"):
        create_source("list", root=".")
    with pytest.raises(ValueError, match=r"does not accept annotations \(its arguments: root"):
        create_source("folder", root=".", annotations="x.txt")
    with pytest.raises(ValueError, match="split must be 1, 2 or 3"):
        create_source("hmdb51", root=".", split=0)
    with pytest.raises(ValueError, match=r"'folder' is already registered \(FolderSource\)"):
        register_source("folder")(type("MyFolder", (VideoSource,), {}))
    assert register_source("folder")(FolderSource) is FolderSource  # the same class: fine
    with pytest.raises(ValueError, match="VideoSource subclasses"):
        register_source("plain")(dict)
    with pytest.raises(ValueError, match="non-empty string"):
        register_source("")
    with pytest.raises(NotImplementedError):
        VideoSource().read()


def test_a_user_source_registers_without_touching_the_library(tmp_path):
    """A new layout is a small class: here every video of <root> is class 'all' (train)."""
    touch(tmp_path / "x.mp4")
    touch(tmp_path / "y.webm")
    try:
        @register_source("flat_test")
        class FlatSource(VideoSource):
            def __init__(self, root: str, label_name: str = "all") -> None:
                self.root, self.label_name = root, label_name

            def read(self) -> SourceSplits:
                files = sorted(os.listdir(self.root))
                records = [VideoRecord(os.path.join(self.root, f), 0, f) for f in files]
                return SourceSplits({"train": records}, [self.label_name], [])

        source = create_source("flat_test", root=str(tmp_path), label_name=None)
        assert source.read().splits["train"][1].video_id == "y.webm"
        assert source.class_names() == ["all"] and FlatSource.name == "flat_test"
        replaced = register_source("flat_test", overwrite=True)(FlatSource)
        assert source_class("flat_test") is replaced

        @register_source("flat_test")  # defined again (a re-run cell): replaces the first
        class FlatSource(VideoSource):  # noqa: F811
            def read(self) -> SourceSplits:
                return SourceSplits({}, [], [])

        assert source_class("flat_test") is FlatSource and FlatSource is not replaced
        with pytest.raises(ValueError, match="already registered"):
            register_source("flat_test")(type("Other", (VideoSource,), {}))
    finally:
        registry._SOURCES.pop("flat_test", None)
    assert "flat_test" not in list_sources()


def test_synthetic_settings_and_seed():
    source = SyntheticSource(num_classes=3)
    assert source.settings["seed"] == 0  # alone: seed 0
    source.adopt_seed(7)
    assert source.settings["seed"] == 7  # seed=None: the data module's
    assert SyntheticSource(seed=2).settings["seed"] == 2
    assert "synthetic-" in source.directory
    assert SyntheticSource(cache_dir="/tmp/x").directory == "/tmp/x"
    for name, value in (("num_classes", 13), ("num_frames", 2), ("size", 8), ("sprites", 0),
                        ("bias", -0.1)):
        with pytest.raises(ValueError, match=name):
            SyntheticSource(**{name: value})
