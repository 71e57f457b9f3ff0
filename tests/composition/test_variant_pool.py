"""The variant pool in real Redis: a (prompt key, seed) is one variant, the first image added for it."""
import uuid

from helpers import on_redis

from composition.store.variants import Variants, variant_id


def test_a_variant_is_the_first_image_added_for_its_seed(redis_url):
    prompt_key = uuid.uuid4().hex[:16]

    async def steps(client):
        pool = Variants(client)
        made = [await pool.add_variant(prompt_key, 7, "a" * 32, {"replica": "one"})]
        first = await pool.variant(variant_id(prompt_key, 7))
        made.append(await pool.add_variant(prompt_key, 7, "b" * 32, {"replica": "two"}))
        again = await pool.variant(variant_id(prompt_key, 7))
        made.append(await pool.add_variant(prompt_key, 8, "c" * 32, {}))
        other = await pool.variant(variant_id(prompt_key, 8))
        return made, first, again, other, await pool.variants_for_seeds(prompt_key, [7, 8]), await pool.variants(
            prompt_key)

    made, first, again, other, by_seed, pool = on_redis(redis_url, steps)
    assert made == [True, False, True]
    assert first.id == again.id == variant_id(prompt_key, 7)
    assert (again.asset_id, again.metadata, again.created_at) == ("a" * 32, {"replica": "one"}, first.created_at)
    assert [v.asset_id for v in by_seed] == ["a" * 32, "c" * 32] and other.seed == 8
    assert [v.id for v in pool] == [first.id, other.id] and all(v.deliveries == 0 for v in pool)
