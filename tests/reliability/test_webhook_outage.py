"""A webhook receiver that is down while the task ends and while the runner (which sends deliveries) is SIGKILLed:
the delivery waits in Redis, and the runner's successor delivers it once the receiver is back, exactly once."""
import os
import signal
import time

from helpers import Receiver, replica_pids, webhook_secret
from standardwebhooks import Webhook


def test_a_receiver_down_through_a_runner_restart_gets_the_delivery_afterwards(client, redis_url):
    receiver = Receiver()  # its port is chosen, nothing listens there yet
    response = client.post("/v1/prompts/optimize", json={
        "prompt": f"a ferry in fog {time.time_ns()}", "webhook_url": receiver.url})
    assert response.status_code == 200, response.text
    task_id = response.headers["x-task-id"]
    deadline = time.monotonic() + 30
    while (delivery := client.get(f"/v1/tasks/{task_id}").json()["webhooks"][0]["deliveries"][0])["attempts"] < 2:
        assert time.monotonic() < deadline, delivery
        time.sleep(0.1)
    assert delivery["status"] == "pending" and "ConnectError" in delivery["last_error"]
    [runner] = replica_pids("TaskRunner")
    os.kill(runner, signal.SIGKILL)
    time.sleep(3)  # down a while longer, with no runner
    receiver.start()
    try:
        receiver.wait(accepted=1, timeout_s=90)
        time.sleep(2.5)  # past the longest backoff: no second delivery
    finally:
        receiver.stop()
    assert len(receiver.received) == 1
    secret = webhook_secret(redis_url)
    headers, body, _ = receiver.received[0]
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "task.succeeded" and event["data"]["result"] == response.json()
    delivery = client.get(f"/v1/tasks/{task_id}").json()["webhooks"][0]["deliveries"][0]
    assert delivery["status"] == "delivered" and delivery["attempts"] >= 3 and delivery["last_status"] == 200
    assert delivery["id"] == headers["webhook-id"]

