"""A tiny COCO-format dataset written by the tests: shapes images saved as PNG files of two sizes and
an instances JSON with non-contiguous category ids, one crowd box and one image without annotations."""

import json

from PIL import Image

from numpy_retinanet.data.shapes import ShapesDataset

#: The category id of each shapes label: not 0..K-1, and the file lists them out of order (7, 3, 11).
CATEGORY_IDS = {0: 3, 1: 7, 2: 11}
NAMES = {0: "circle", 1: "square", 2: "triangle"}
#: (side, seed) of each image; image n has id 100 + n and file img{n}.png.
IMAGES = [(128, 1), (96, 2), (128, 3), (96, 4), (128, 5), (96, 6)]
EMPTY = 5  # the image listed without annotations
CROWD_IMAGE = 1
CROWD_BOX = [2.0, 3.0, 40.0, 30.0]  # x, y, w, h in image 1 (96 x 96)


def write_coco_dataset(root, images=IMAGES):
    """Write ``root/images/img{n}.png`` and ``root/instances.json``; return (folder, json path, json dict).

    Each shapes box becomes [x, y, w, h] with area w * h (pycocotools needs one); the crowd box
    has category square."""
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    records, annotations = [], []
    for n, (side, seed) in enumerate(images):
        picture, target = ShapesDataset(1, side, seed=seed).raw(0)
        Image.fromarray(picture).save(folder / f"img{n}.png")
        records.append({"id": 100 + n, "file_name": f"img{n}.png", "width": side, "height": side})
        if n == EMPTY:
            continue
        for (x1, y1, x2, y2), label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + n, "category_id": CATEGORY_IDS[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    annotations.append({"id": len(annotations) + 1, "image_id": 100 + CROWD_IMAGE, "category_id": CATEGORY_IDS[1],
                        "bbox": CROWD_BOX, "area": CROWD_BOX[2] * CROWD_BOX[3], "iscrowd": 1})
    data = {"images": records, "annotations": annotations,
            "categories": [{"id": CATEGORY_IDS[k], "name": NAMES[k]} for k in (1, 0, 2)]}
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return folder, path, data
