"""Loading processors, including on machines without torchvision.

transformers 5 builds every processor that has a video processor attribute (Qwen2-VL, Qwen2.5-VL,
LLaVA-OneVision, ...) only when torchvision is importable, even for image-only use. CPU-only boxes
(CI, laptops) often lack a torchvision matching their torch. There we assemble the family's *real*
processor class from its saved tokenizer, its PIL image processor and its chat template, with an
:class:`ImageOnlyVideoProcessor` in the video slot that raises a clear error if a video is passed.
With torchvision installed, ``AutoProcessor`` is used unchanged.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any


def torchvision_available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def _image_only_video_processor_cls():
    from transformers.video_processing_utils import BaseVideoProcessor

    class ImageOnlyVideoProcessor(BaseVideoProcessor):
        """Stands in for a video processor where torchvision is missing; refuses videos."""

        merge_size = 2

        def __call__(self, *args, **kwargs):  # noqa: D401
            raise RuntimeError(
                "Video inputs need torchvision, which is not installed; this processor was assembled for "
                "images and text only. Install torchvision matching your torch to process videos."
            )

    return ImageOnlyVideoProcessor


def _register_video_mixin() -> None:
    """Expose ``VideoProcessorMixin`` on the transformers namespace so processor type checks can run.

    transformers only exports it when torchvision is present, but the class itself imports fine.
    """
    import transformers
    from transformers.video_processing_utils import BaseVideoProcessor, VideoProcessorMixin

    for name, obj in (("VideoProcessorMixin", VideoProcessorMixin), ("BaseVideoProcessor", BaseVideoProcessor)):
        if name not in transformers.__dict__:
            setattr(transformers, name, obj)


def processor_without_torchvision(processor_cls, **parts: Any):
    """Build ``processor_cls`` (a real transformers processor class) with an image-only video slot."""
    _register_video_mixin()
    return processor_cls(video_processor=_image_only_video_processor_cls()(), **parts)


def _processor_class_name(path: Path) -> str:
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = path / name
        if file.exists():
            cls = json.loads(file.read_text()).get("processor_class")
            if cls:
                return cls
    raise ValueError(
        f"Cannot tell which processor class {path} uses: no 'processor_class' in processor_config.json, "
        "preprocessor_config.json or tokenizer_config.json."
    )


def load_processor(name_or_path: str, trust_remote_code: bool = False, **kwargs: Any):
    """``AutoProcessor.from_pretrained`` with the torchvision-free fallback described above."""
    from transformers import AutoProcessor

    if torchvision_available() or not Path(name_or_path).is_dir():
        return AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)
    path = Path(name_or_path)
    has_video = (path / "video_preprocessor_config.json").exists() or '"video_processor"' in (
        (path / "processor_config.json").read_text() if (path / "processor_config.json").exists() else ""
    )
    if not has_video:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    cls_name = _processor_class_name(path)
    processor_cls = getattr(transformers, cls_name, None)
    if processor_cls is None:
        raise ValueError(f"transformers has no processor class {cls_name!r} (named in {path}).")
    extra = {}
    proc_cfg = path / "processor_config.json"
    if proc_cfg.exists():
        cfg = json.loads(proc_cfg.read_text())
        extra = {
            k: v
            for k, v in cfg.items()
            if k not in {"processor_class", "image_processor", "video_processor"} and not isinstance(v, dict)
        }
    template = None
    for name in ("chat_template.jinja", "chat_template.json"):
        file = path / name
        if file.exists():
            text = file.read_text()
            template = json.loads(text)["chat_template"] if name.endswith(".json") else text
            break
    image_kwargs = kwargs.pop("image_processor_kwargs", {})
    return processor_without_torchvision(
        processor_cls,
        image_processor=AutoImageProcessor.from_pretrained(path, **image_kwargs),
        tokenizer=AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code),
        chat_template=template,
        **extra,
    )
