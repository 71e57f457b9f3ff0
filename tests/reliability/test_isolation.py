"""Isolation with auth on (the real app in-process over the session's deployments and Redis): a user cannot read
another user's tasks, projects, seen lists or private assets (404), and results derived from uploads are never
reused across users, while text-only generations stay shared through the prompt cache."""
import time

import httpx
from helpers import png
from secured import bearer


async def keys_for(services, *names: str) -> list[str]:
    return [(await services.access.create_key(f"{name}-{time.time_ns()}", "pro"))[0] for name in names]


async def upload(client: httpx.AsyncClient, key: str, image: bytes) -> str:
    response = await client.post("/v1/assets", headers=bearer(key), files={"file": ("in.png", image, "image/png")})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_with_auth_a_user_cannot_see_another_users_tasks_or_projects(secured):
    async def steps(client, services):
        ana, ben = await keys_for(services, "ana", "ben")
        task = await client.post("/v1/prompts/optimize", headers=bearer(ana), json={"prompt": "a fjord", "wait_s": 30})
        project = await client.post("/v1/projects", headers=bearer(ana), json={"name": "ana's"})
        task_id, project_id = task.headers["X-Task-Id"], project.json()["id"]
        return {"own": await client.get(f"/v1/tasks/{task_id}", headers=bearer(ana)),
                "other": await client.get(f"/v1/tasks/{task_id}", headers=bearer(ben)),
                "cancel": await client.delete(f"/v1/tasks/{task_id}", headers=bearer(ben)),
                "list": await client.get("/v1/tasks", headers=bearer(ben), params={"user_id": "anyone"}),
                "project": await client.get(f"/v1/projects/{project_id}", headers=bearer(ben)),
                "export": await client.get(f"/v1/projects/{project_id}/export", headers=bearer(ben)),
                "own_project": await client.get(f"/v1/projects/{project_id}", headers=bearer(ana))}

    out = secured(steps)
    assert out["own"].status_code == 200 and out["own_project"].status_code == 200
    assert out["other"].status_code == out["cancel"].status_code == 404
    assert out["project"].status_code == out["export"].status_code == 404
    assert out["list"].json()["tasks"] == []


def test_uploads_and_what_is_derived_from_them_stay_private(secured):
    async def steps(client, services):
        ana, ben = await keys_for(services, "ana", "ben")
        image = png(64, 64, seed=int(time.time_ns() % 10**6))
        source = await upload(client, ana, image)
        edit = {"image": source, "prompt": "make it night", "seed": 5, "wait_s": 120}
        ana_edit = await client.post("/v1/images/edits", headers=bearer(ana), json=edit)
        video = await client.post("/v1/videos/generations", headers=bearer(ana), json={
            "image": source, "model": "svd", "num_frames": 8, "steps": 2, "wait_s": 120})
        edited, clip = ana_edit.json()["images"][0]["asset_id"], video.json()["video"]["asset_id"]
        out = {"ana_edit": ana_edit, "video": video,
               "ana_reads": [await client.get(f"/v1/assets/{a}", headers=bearer(ana)) for a in (source, edited, clip)],
               "ben_reads": [await client.get(f"/v1/assets/{a}", headers=bearer(ben)) for a in (source, edited, clip)],
               "ben_edit_of_ana_upload": await client.post("/v1/images/edits", headers=bearer(ben), json=edit),
               "ben_video_of_ana_upload": await client.post("/v1/videos/generations", headers=bearer(ben), json={
                   "image": source, "model": "svd", "num_frames": 8, "steps": 2, "wait_s": 0})}
        assert await upload(client, ben, image) == source  # the same bytes: content-addressed, now Ben's too
        out["ben_reads_own_copy"] = await client.get(f"/v1/assets/{source}", headers=bearer(ben))
        out["ben_edit"] = await client.post("/v1/images/edits", headers=bearer(ben), json=edit)
        return out

    out = secured(steps)
    assert out["ana_edit"].status_code == out["video"].status_code == 200
    assert [r.status_code for r in out["ana_reads"]] == [200, 200, 200]
    assert out["ana_reads"][0].headers["cache-control"].startswith("private")
    assert [r.status_code for r in out["ben_reads"]] == [404, 404, 404]
    for name in ("ben_edit_of_ana_upload", "ben_video_of_ana_upload"):
        assert out[name].status_code == 404 and out[name].json()["error"]["field"] == "image"
    assert out["ben_reads_own_copy"].status_code == 200
    ben_edit, ana_edit = out["ben_edit"].json(), out["ana_edit"].json()
    assert out["ben_edit"].status_code == 200 and ben_edit["cache_hit"] is False  # never Ana's cached edit
    assert ben_edit["prompt_key"] != ana_edit["prompt_key"]


def test_text_generations_are_shared_through_the_cache_and_seen_lists_are_private(secured):
    async def steps(client, services):
        ana, ben = await keys_for(services, "ana", "ben")
        body = {"prompt": f"a copper kettle on a stove {time.time_ns()}", "wait_s": 120}
        first = await client.post("/v1/images/generations", headers=bearer(ana), json=body)
        second = await client.post("/v1/images/generations", headers=bearer(ben), json=body)
        asset = second.json()["images"][0]["asset_id"]
        ana_user = (await services.access.lookup(ana)).user_id
        return {"first": first, "second": second,
                "ben_reads": await client.get(f"/v1/assets/{asset}", headers=bearer(ben)),
                "ben_reads_ana_seen": await client.get(f"/v1/users/{ana_user}/seen", headers=bearer(ben)),
                "ana_reads_own_seen": await client.get(f"/v1/users/{ana_user}/seen", headers=bearer(ana))}

    out = secured(steps)
    assert out["first"].json()["cache_hit"] is False and out["second"].json()["cache_hit"] is True
    assert out["ben_reads"].status_code == 200
    assert out["ben_reads_ana_seen"].status_code == 404 and out["ana_reads_own_seen"].status_code == 200
