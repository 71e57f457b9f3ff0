"""Builds every workflow over one `Services`; the runner looks them up by task kind."""
from __future__ import annotations

from dataclasses import dataclass
from typing import get_type_hints

from composition.services import Services
from composition.workflows.base import Workflow
from composition.workflows.forks import ForksWorkflow
from composition.workflows.images import ImagesWorkflow
from composition.workflows.prompts import PromptsWorkflow
from composition.workflows.selfies import SelfiesWorkflow
from composition.workflows.soul_videos import SoulVideosWorkflow
from composition.workflows.storyboards import StoryboardsWorkflow
from composition.workflows.variants import VariantsWorkflow
from composition.workflows.videos import VideosWorkflow
from composition.workflows.writing import WritingWorkflow


@dataclass(frozen=True)
class Workflows:
    images: ImagesWorkflow
    variants: VariantsWorkflow
    videos: VideosWorkflow
    selfies: SelfiesWorkflow
    soul_videos: SoulVideosWorkflow
    storyboards: StoryboardsWorkflow
    writing: WritingWorkflow
    prompts: PromptsWorkflow
    forks: ForksWorkflow

    def by_kind(self) -> dict[str, Workflow]:
        return {workflow.kind: workflow for workflow in vars(self).values()}


KINDS = tuple(workflow.kind for workflow in get_type_hints(Workflows).values())  # task kinds: "image", "variant", …


def build_workflows(services: Services) -> Workflows:
    images = ImagesWorkflow(services)
    variants = VariantsWorkflow(services, images)
    videos = VideosWorkflow(services)
    return Workflows(images=images, variants=variants, videos=videos,
                     selfies=SelfiesWorkflow(services, variants, videos),
                     soul_videos=SoulVideosWorkflow(services, variants, videos),
                     storyboards=StoryboardsWorkflow(services, videos), writing=WritingWorkflow(services),
                     prompts=PromptsWorkflow(services), forks=ForksWorkflow(services, images))
