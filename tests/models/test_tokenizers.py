from models import tokenizers


def test_clip_wraps_with_bos_eos_and_pads_to_max_length():
    tokenizer = tokenizers.clip()
    ids = tokenizer("a cat", padding="max_length", max_length=16, truncation=True).input_ids
    assert len(ids) == 16
    assert ids[0] == tokenizer.bos_token_id == 0
    assert ids[6] == tokenizer.eos_token_id == 1
    assert ids[7:] == [tokenizer.pad_token_id] * 9


def test_any_language_round_trips_through_real_ids():
    tokenizer = tokenizers.t5()
    text = "猫が屋根の上に 사랑 café"
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id not in ids
    assert max(ids) < len(tokenizer) <= 1000
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_qwen_chat_template_and_left_padding():
    tokenizer = tokenizers.qwen()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    batch = tokenizer(["a", "abc"], padding=True, add_special_tokens=False)
    assert batch.input_ids[0][:2] == [tokenizer.pad_token_id] * 2
    assert batch.attention_mask[0] == [0, 0, 1]


def test_generated_tokenizers_give_the_same_ids_in_every_process():
    """Byte ids must not follow a set's iteration order: two replicas of a tiny model would then encode one prompt
    differently and render different images for the same seed."""
    import subprocess
    import sys

    script = "from models import tokenizers; print(tokenizers.clip()('a red fox, 雨').input_ids)"
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(runs) == 1


def test_a_shared_tokenizer_encodes_each_call_with_its_own_settings_across_threads():
    """Diffusers' pipelines tokenize each prompt twice, padded to the maximum length, then to the longest: a fast
    tokenizer sets those on its Rust tokenizer before encoding with the GIL released, so two threads' calls at once
    encoded with each other's settings (a raw tokenizer here: dozens of short rows in 3,000 calls)."""
    import threading

    shared = tokenizers.OneAtATime(tokenizers.t5())
    lengths: list[int] = []

    def padded() -> None:
        for _ in range(400):
            lengths.append(len(shared(["a harbour at dawn"], padding="max_length", max_length=64,
                                      truncation=True).input_ids[0]))

    def longest() -> None:
        for _ in range(400):
            shared(["make it night, please"], padding="longest")

    threads = [threading.Thread(target=padded), threading.Thread(target=longest)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lengths == [64] * 400
    assert len(shared) == len(shared.tokenizer) and shared.pad_token_id == 0
    assert shared.decode(shared("fox").input_ids, skip_special_tokens=True) == "fox"
