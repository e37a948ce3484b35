import pytest

from streamdit.sampling.partition import Partition, Schedule


def test_special_cases_share_one_type():
    assert Partition.uniform(16, 32).describe().startswith("uniform")
    assert Partition.diagonal(16).describe().startswith("diagonal")
    p = Partition.from_buffer(16, 2, steps_per_frame=8)
    assert (p.chunks, p.micro_steps, p.buffer_frames) == (8, 1, 16)
    assert Partition.from_buffer(16, 2, micro_steps=2, ref_frames=3).buffer_frames == 19


def test_bands_are_per_chunk():
    p = Partition(chunks=4, chunk_frames=2, micro_steps=2, ref_frames=1)
    u0 = p.frame_u(0).tolist()
    assert u0 == [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]
    assert p.frame_u(1).tolist() == [0.0, 0.125, 0.125, 0.375, 0.375, 0.625, 0.625, 0.875, 0.875]


@pytest.mark.parametrize("kwargs, message", [
    (dict(buffer_frames=16, chunk_frames=3, micro_steps=1),
     "chunk_frames=3 does not divide buffer_frames=16; choose one of 1, 2, 4, 8, 16"),
    (dict(buffer_frames=16, chunk_frames=2, steps_per_frame=12),
     "steps_per_frame=12 is not a multiple of the number of chunks N=8"),
    (dict(buffer_frames=16, chunk_frames=2), "give exactly one of micro_steps"),
    (dict(buffer_frames=0, chunk_frames=1, micro_steps=1), "buffer_frames=0 must be a positive integer"),
    (dict(buffer_frames=16, chunk_frames=2, micro_steps=1, ref_frames=-1), "ref_frames=-1 must be an integer >= 0"),
    (dict(buffer_frames=16, chunk_frames=2, micro_steps=0), "micro_steps=0 must be a positive integer"),
])
def test_impossible_partitions_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        Partition.from_buffer(**kwargs)
    assert message in str(err.value)


def test_bad_schedule():
    with pytest.raises(ValueError, match="shift"):
        Schedule(0)
    with pytest.raises(ValueError, match="outside"):
        Schedule(1).sigma(1.5)
