"""Sources: the registry, every built-in source, layout parsers, bad annotations."""

from __future__ import annotations

import os

import pytest

from dsm_lightning.data.sources import (
    AnnotationError,
    Diving48Source,
    FolderSource,
    HMDB51Source,
    KineticsCSVSource,
    ListSource,
    SourceSplits,
    SSv2Source,
    SyntheticSource,
    UCF101Source,
    VideoRecord,
    VideoSource,
    create_source,
    drop_missing,
    list_sources,
    read_diving48,
    read_folder,
    read_hmdb51,
    read_kinetics_csv,
    read_list_files,
    read_ssv2,
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


# ------------------------------------------------------------- Something-Something v2, Diving48

SSV2_CLASSES = ["Holding something next to something", "Pushing something from left to right"]
DIVING48_CLASSES = ["Back_15som_05Twis_FREE", "Forward_25som_NoTwis_PIKE"]


def make_ssv2(root, train_extra: str = "", videos=("101", "102", "103", "201")):
    """The official SSv2 layout: labels JSON, train / validation lists, <id>.webm files."""
    ann = root / "annotations"
    write(ann / "something-something-v2-labels.json",
          '{"Holding something next to something": "0",\n'
          ' "Pushing something from left to right": "1"}\n')
    write(ann / "something-something-v2-train.json", """[
{"id": "101", "label": "holding a cup next to a pen",
 "template": "Holding [something] next to [something]", "placeholders": ["a cup", "a pen"]},
{"id": "102", "label": "pushing a box from left to right",
 "template": "Pushing [something] from left to right", "placeholders": ["a box"]},
{"id": "103", "template": "Holding [something] next to [something]"},
{"id": "104", "template": "Spinning [something]"}""" + train_extra + "\n]\n")
    write(ann / "something-something-v2-validation.json",
          '[{"id": "201", "template": "Pushing [something] from left to right"}]')
    for video_id in videos:
        touch(root / "videos" / f"{video_id}.webm")
    return ann


def make_diving48(root, train_text: str | None = None, vocab: bool = True):
    """The official Diving48 V2 layout: JSON splits, vocabulary, rgb/<vid_name>.mp4."""
    ann = root / "annotations"
    if vocab:
        write(ann / "Diving48_vocab.json",
              '[["Back", "15som", "05Twis", "FREE"],\n ["Forward", "25som", "NoTwis", "PIKE"]]')
    write(ann / "Diving48_V2_train.json", train_text or """[
  {"vid_name": "-mmq0PT-u8k_0", "label": 0, "start_frame": 0, "end_frame": 82},
  {"vid_name": "-mmq0PT-u8k_1", "label": 1, "start_frame": 0, "end_frame": 75},
  {"vid_name": "0Bdxlk6M4ck_3", "label": 1, "start_frame": 0, "end_frame": 60},
  {"vid_name": "0Bdxlk6M4ck_4", "label": 5, "start_frame": 0, "end_frame": 60}
]""")
    write(ann / "Diving48_V2_test.json", """[
  {"vid_name": "_8Vy3dlHg2w_0", "label": 1, "start_frame": 0, "end_frame": 40},
  {"vid_name": "_8Vy3dlHg2w_1", "label": 0, "start_frame": 0, "end_frame": 44}]""")
    for vid in ("-mmq0PT-u8k_0", "-mmq0PT-u8k_1", "0Bdxlk6M4ck_3", "_8Vy3dlHg2w_0"):
        touch(root / "rgb" / f"{vid}.mp4")
    return ann


def test_ssv2_layout_templates_and_skips(tmp_path):
    ann = make_ssv2(tmp_path, videos=("101", "201"))
    result = read_ssv2(str(tmp_path / "videos"), str(ann))
    assert result.class_names == SSV2_CLASSES
    assert [(r.video_id, r.label) for r in result.splits["train"]] == [("101", 0), ("102", 1),
                                                                        ("103", 0)]
    assert result.splits["train"][0].path == str(tmp_path / "videos" / "101.webm")
    assert [(r.video_id, r.label) for r in result.splits["test"]] == [("201", 1)]
    # a template that is not a class is skipped with its file and line
    assert [(s.split, s.reason) for s in result.skipped] == [
        ("train", "unknown class 'Spinning something'")]
    assert result.skipped[0].item.endswith("something-something-v2-train.json:7: 104")
    # missing videos: counted skips of the data module (drop_missing), not errors
    kept = drop_missing(result)
    assert [r.video_id for r in kept.splits["train"]] == ["101"]
    assert sorted(os.path.basename(s.item) for s in kept.skipped
                  if s.reason == "file not found") == ["102.webm", "103.webm"]
    mp4 = SSv2Source(str(tmp_path / "videos"), str(ann), extension=".mp4").read()
    assert mp4.splits["test"][0].path.endswith("201.mp4")
    with pytest.raises(ValueError, match="extension"):
        SSv2Source(".", ".", extension="webm")


@pytest.mark.parametrize("extra, labels, match", [
    (',\n{"template": "Spinning [something]"}', None, r"train.json, line 8: expected \{"),
    (',\n{"id": "9"}', None, r"train.json, line 8: expected"),
    (',\n{"id": "9", "template": "x"', None, r"train.json, line 9: not valid JSON"),
    ("", '{"Holding something next to something": "zero"}', r"labels.json: class 'Holding"),
    ("", '{"a": "0", "b": "0"}', r"labels.json: class 'b': index 0 already used by 'a'"),
    ("", '{"a": "0", "b": "2"}', r"labels.json: indices must be 0..1; missing \[1\]"),
    ("", '["a", "b"]', r"labels.json, line 1: expected a non-empty object"),
])
def test_ssv2_malformed_names_file_and_line(tmp_path, extra, labels, match):
    ann = make_ssv2(tmp_path, train_extra=extra)
    if labels is not None:
        write(ann / "something-something-v2-labels.json", labels)
    with pytest.raises(AnnotationError, match=match):
        read_ssv2(str(tmp_path / "videos"), str(ann))


def test_ssv2_short_names_and_missing_files(tmp_path):
    ann = make_ssv2(tmp_path)
    for role in ("labels", "train", "validation"):
        os.rename(ann / f"something-something-v2-{role}.json", ann / f"{role}.json")
    assert len(read_ssv2(str(tmp_path), str(ann)).splits["train"]) == 3
    os.remove(ann / "validation.json")
    with pytest.raises(AnnotationError, match="no validation file .*validation.json"):
        read_ssv2(str(tmp_path), str(ann))
    with pytest.raises(AnnotationError, match="annotations directory not found"):
        read_ssv2(str(tmp_path), str(tmp_path / "nope"))
    assert SSv2Source(str(tmp_path), str(ann)).class_names() == SSV2_CLASSES  # labels only


def test_diving48_layout_vocab_and_skips(tmp_path):
    ann = make_diving48(tmp_path)
    result = read_diving48(str(tmp_path / "rgb"), str(ann))
    assert result.class_names == DIVING48_CLASSES
    assert [(r.video_id, r.label) for r in result.splits["train"]] == [
        ("-mmq0PT-u8k_0", 0), ("-mmq0PT-u8k_1", 1), ("0Bdxlk6M4ck_3", 1)]
    assert result.splits["train"][0].path == str(tmp_path / "rgb" / "-mmq0PT-u8k_0.mp4")
    assert result.splits["train"][0].start_sec is None  # released clips are already trimmed
    assert [r.label for r in result.splits["test"]] == [1, 0]
    assert [s.reason for s in result.skipped] == ["unknown class 5 (of 2)"]
    assert result.skipped[0].item.endswith("Diving48_V2_train.json:5: 0Bdxlk6M4ck_4")
    assert [os.path.basename(s.item) for s in drop_missing(result).skipped[1:]] == [
        "_8Vy3dlHg2w_1.mp4"]
    assert Diving48Source(str(tmp_path / "rgb"), str(ann)).class_names() == DIVING48_CLASSES
    # without the vocabulary: classes "0" .. max train label
    os.remove(ann / "Diving48_vocab.json")
    result = read_diving48(str(tmp_path / "rgb"), str(ann))
    assert result.class_names == [str(i) for i in range(6)] and not result.skipped
    with pytest.raises(ValueError, match="version"):
        Diving48Source(".", ".", version="V3")


@pytest.mark.parametrize("train, match", [
    ('[{"vid_name": "a", "label": -1}]', r"V2_train.json, line 1: expected \{"),
    ('[\n{"vid_name": "a", "label": 0},\n{"label": 0}]', r"V2_train.json, line 3: expected"),
    ('[{"vid_name": "a", "label": "0"}]', r"line 1: expected"),
    ('[{"vid_name": "a", "label": 0, "start_frame": 9, "end_frame": 3}]',
     r"line 1: end_frame 3 is not after start_frame 9"),
    ('[{"vid_name": "a", "label": 0, "end_frame": 2.5}]', r"line 1: end_frame must be"),
    ('{"vid_name": "a"}', r"V2_train.json, line 1: expected a JSON list"),
    ('[\n\n{"vid_name": "a", "label": 0} {"vid_name": "b"}]', r"line 3: expected ',' or ']'"),
])
def test_diving48_malformed_names_file_and_line(tmp_path, train, match):
    ann = make_diving48(tmp_path, train_text=train)
    with pytest.raises(AnnotationError, match=match):
        read_diving48(str(tmp_path / "rgb"), str(ann))


def test_ssv2_and_diving48_clips_decode_through_the_data_module(tmp_path):
    """Tiny known-frame videos in both layouts: the data module decodes the right frames
    with the right labels (webm for SSv2 as released, mp4 for Diving48)."""
    from helpers.video_fixtures import frame_ids, make_known_video

    from dsm_lightning.data.datamodule import VideoDataModule

    ann = make_ssv2(tmp_path / "ssv2", videos=())
    make_diving48(tmp_path / "d48")
    for video_id, length in (("101", 12), ("102", 16), ("103", 20), ("201", 14)):
        make_known_video(str(tmp_path / "ssv2" / "videos" / f"{video_id}.webm"), length,
                         codec="libvpx-vp9")
    for path in (tmp_path / "d48" / "rgb").iterdir():
        make_known_video(str(path), 10)
    for source, root, ann_dir, labels in (
        ("ssv2", tmp_path / "ssv2" / "videos", ann, [0, 1, 0]),
        ("diving48", tmp_path / "d48" / "rgb", tmp_path / "d48" / "annotations", [0, 1, 1]),
    ):
        data = VideoDataModule(source=source, root=str(root), annotations=str(ann_dir),
                               task="classify", num_frames=4, stride=2, frame_size=32,
                               crop_size=32, batch_size=3, num_workers=0)
        batch = next(iter(data.clip_dataloader("train", batch_size=3)))
        assert batch["label"].tolist() == labels, source
        for clip in batch["video"]:  # the centre window of each known video: 4 frames, step 2
            ids = frame_ids(clip)
            assert [b - a for a, b in zip(ids, ids[1:])] == [2, 2, 2], (source, ids)


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
    make_ssv2(tmp_path / "ssv2")
    make_diving48(tmp_path / "diving48")
    return {
        "folder": (dict(root=str(tmp_path / "folder")), ["jump", "walk"], {"train": 2}),
        "ucf101": (dict(root=str(tmp_path / "ucf")), ["Run", "Swim"], {"train": 3, "test": 1}),
        "hmdb51": (dict(root=str(tmp_path / "hmdb"), split=1), ["clap", "wave"],
                   {"train": 2, "test": 2}),
        "kinetics_csv": (dict(root=str(tmp_path), annotations=kinetics),
                         ["abseiling"], {"train": 1}),
        "list": (dict(root=str(tmp_path / "list"), annotations=train, test_annotations=test),
                 ["0", "1"], {"train": 2, "test": 1}),
        "ssv2": (dict(root=str(tmp_path / "ssv2" / "videos"),
                      annotations=str(tmp_path / "ssv2" / "annotations")),
                 SSV2_CLASSES, {"train": 3, "test": 1}),
        "diving48": (dict(root=str(tmp_path / "diving48" / "rgb"),
                          annotations=str(tmp_path / "diving48" / "annotations")),
                     DIVING48_CLASSES, {"train": 3, "test": 2}),
        "synthetic": (dict(num_classes=2, videos_per_class=1, eval_videos_per_class=1,
                           num_frames=4, size=16, cache_dir=str(tmp_path / "synthetic")),
                      ["move_right", "move_left"], {"train": 2, "balanced_test_static": 2}),
    }


BUILT_IN = {"folder": FolderSource, "ucf101": UCF101Source, "hmdb51": HMDB51Source,
            "kinetics_csv": KineticsCSVSource, "list": ListSource, "synthetic": SyntheticSource,
            "ssv2": SSv2Source, "diving48": Diving48Source}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_source_by_name(name, layouts):
    assert name in list_sources() and source_class(name) is BUILT_IN[name]
    kwargs, class_names, sizes = layouts[name]
    extra = {} if name in ("ssv2", "diving48") else {"test_root": None}  # None: the default
    source = create_source(name, **kwargs, **extra)
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
    with pytest.raises(ValueError, match="unknown source 'nope'; registered sources: .*folder"):
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
        registry._SOURCES.unregister("flat_test")
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
