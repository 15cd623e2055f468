"""Validators as a creator writes them in their own module (``package.module:function``)."""


def three_args(submission, folder, task):
    return False, f"labels {task.annotation_class_labels}"


def two_args(submission, folder):
    return (folder / "annotations_coco.json").exists()
