"""facenet-pytorch's MTCNN face detector (`MTCNN(keep_all=True).detect(img, landmarks=True)`)
re-implemented in PyTorch for bench/python_vs_peers.py, where facenet-pytorch itself cannot be
installed. Written from the published algorithm (timesler/facenet-pytorch, models/mtcnn.py and
models/utils/detect_face.py) and the layer layout of its weight files, which it loads as they are
(`pnet.pt`, `rnet.pt`, `onet.pt`: state dicts, legacy `torch.save` format).

  python3 bench/mtcnn_peer.py --check [--golden ../shared/golden/mtcnn/detections.json]

--check runs the detector on every image of facenet-pytorch's own golden detections and prints,
per image, the number of faces and the largest difference of boxes and landmarks (pixels) and of
probabilities to the golden; it fails (exit 1) when a face count differs, or beyond 1e-3 px / 1e-4.

What it does, as facenet-pytorch does it (one image, RGB uint8, float32 throughout):
  1. pyramid: scales 12/min_face_size * 0.709^k while min(h, w) * scale >= 12; each level resized
     to (int(h*s + 1), int(w*s + 1)) by area interpolation, normalised (x - 127.5) * 0.0078125;
  2. P-Net on each level; cells with p >= 0.6 become boxes floor((2*cell + 1) / s) ..
     floor((2*cell + 12) / s); NMS (IoU 0.5) per level, then NMS (IoU 0.7) over all levels;
     regression by the width without +1; squared (rerec);
  3. R-Net on 24x24 area-resized crops (pixels [y-1, ey) x [x-1, ex) of the truncated, clipped
     box), p > 0.7, NMS (IoU 0.7), regression (bbreg: width + 1), squared;
  4. O-Net on 48x48 crops, p > 0.7, landmarks from the O-Net input box, regression, NMS with the
     "Min" overlap (intersection over the smaller box, +1 areas) at 0.7;
  5. faces ordered by box area, largest first (select_largest=True).
NMS reproduces torchvision.ops.batched_nms (torchvision 0.14, CPU; not installed here) and
facenet-pytorch's nms_numpy in NumPy.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


# -- networks: module names are the keys of facenet-pytorch's pnet.pt / rnet.pt / onet.pt --------

class PNet(nn.Module):
    """Fully convolutional proposal net: (box regression N x 4 x H x W, probabilities N x 2 x H x W)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops: (regression N x 4, probabilities N x 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights were converted from Caffe: flatten in (W, H, C) order.
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: (regression N x 4, landmarks N x 10 (5 x, then 5 y), probabilities N x 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous().flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


# -- box helpers ------------------------------------------------------------------------------------

def _nms_iou(boxes, scores, threshold):
    """torchvision.ops.nms on CPU: visit boxes by descending score (stable order on ties), keep a
    box unless its IoU (float32, areas without +1) with a kept one exceeds threshold (compared in
    double). Returns the kept indices in visiting order."""
    b = boxes.numpy()
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1) * (y2 - y1)
    todo = np.argsort(-scores.numpy(), kind="stable")
    keep = []
    while todo.size:
        i, rest = todo[0], todo[1:]
        keep.append(i)
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        todo = rest[~(iou.astype(np.float64) > threshold)]
    return torch.as_tensor(np.array(keep, dtype=np.int64))


def _batched_nms(boxes, scores, threshold):
    """torchvision.ops.batched_nms for the boxes of one image. torchvision 0.14 runs a single NMS
    up to 1000 boxes; above, the 'vanilla' path, which re-sorts the kept indices by score."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64)
    keep = _nms_iou(boxes, scores, threshold)
    if boxes.numel() > 4000:
        keep = keep.sort().values  # torch.where(keep_mask)[0]: ascending indices
        keep = keep[scores[keep].sort(descending=True)[1]]
    return keep


def _nms_min(boxes, scores, threshold):
    """facenet-pytorch's nms_numpy(method='Min'): overlap = intersection / smaller area, areas and
    sides with +1, float32; np.argsort's (quicksort) order, highest score taken from the end."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64)
    b = boxes.numpy()
    s = scores.numpy()
    x1, y1, x2, y2 = b[:, 0].copy(), b[:, 1].copy(), b[:, 2].copy(), b[:, 3].copy()
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s)
    pick = []
    while order.size:
        i, rest = order[-1], order[:-1]
        pick.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = (w * h) / np.minimum(area[i], area[rest])
        order = rest[overlap <= threshold]
    return torch.as_tensor(np.array(pick, dtype=np.int64))


def _square(boxes):
    """rerec: grow each box to a square of its longer side around its centre (in place)."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.max(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes, reg):
    """bbreg: shift the corners by reg times the +1 width / height (in place)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    shifted = torch.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                           boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], dim=1)
    boxes[:, :4] = shifted
    return boxes


def _crop_windows(boxes, w, h):
    """pad: the boxes truncated to integers, x and y clipped below at 1, ex and ey above at the
    image size; a crop is pixels [y - 1, ey) x [x - 1, ex)."""
    b = boxes[:, :4].trunc().int().numpy().copy()
    x, y, ex, ey = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    x[x < 1] = 1
    y[y < 1] = 1
    ex[ex > w] = w
    ey[ey > h] = h
    return y, ey, x, ex


def _run_batched(net, data, batch=512):
    """Run net over data in chunks of 512 (facenet-pytorch's fixed_batch_process)."""
    outs = [net(data[i:i + batch]) for i in range(0, len(data), batch)]
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))


class MtcnnPeer:
    """facenet-pytorch's MTCNN(keep_all=True) detector: detect(img) -> (boxes N x 4, probs N,
    points N x 5 x 2), largest face first, as MTCNN.detect(img, landmarks=True); without a face
    (None, [None], None) as there."""

    def __init__(self, weights_dir=SHARED / "weights" / "mtcnn", min_face_size=20,
                 thresholds=(0.6, 0.7, 0.7), factor=0.709):
        weights_dir = pathlib.Path(weights_dir)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name, net in (("pnet", self.pnet), ("rnet", self.rnet), ("onet", self.onet)):
            net.load_state_dict(torch.load(weights_dir / f"{name}.pt", map_location="cpu"))
            net.eval()
        self.min_face_size, self.thresholds, self.factor = min_face_size, thresholds, factor

    def _scales(self, h, w):
        m = 12.0 / self.min_face_size
        scale, smallest, scales = m, min(h, w) * m, []
        while smallest >= 12:
            scales.append(scale)
            scale *= self.factor
            smallest *= self.factor
        return scales

    @staticmethod
    def _crops(img, boxes, w, h, size):
        y, ey, x, ex = _crop_windows(boxes, w, h)
        # Indexed by a 0-dim tensor and unsqueezed as facenet-pytorch does (imgs[image_inds[k], ...]):
        # the crop's strides decide which area-resampling kernel runs, hence its rounding.
        first = torch.tensor(0)
        crops = [F.interpolate(img[first, :, y[k] - 1:ey[k], x[k] - 1:ex[k]].unsqueeze(0),
                               size=(size, size), mode="area")
                 for k in range(len(y)) if ey[k] > y[k] - 1 and ex[k] > x[k] - 1]
        return (torch.cat(crops, dim=0) - 127.5) * 0.0078125

    def _proposals(self, img, h, w):
        """Stage 1: P-Net over the pyramid; rows [x1, y1, x2, y2, score, reg0..3]."""
        found, picks, offset = [], [], 0
        for scale in self._scales(h, w):
            level = F.interpolate(img, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
            reg, prob = self.pnet((level - 127.5) * 0.0078125)
            prob = prob[0, 1]
            hit = prob >= self.thresholds[0]
            cells = hit.nonzero().to(reg.dtype).flip(1)  # (x, y) of each cell, row-major order
            q1 = ((2 * cells + 1) / scale).floor()
            q2 = ((2 * cells + 12) / scale).floor()
            rows = torch.cat([q1, q2, prob[hit].unsqueeze(1), reg[0][:, hit].t()], dim=1)
            picks.append(_batched_nms(rows[:, :4], rows[:, 4], 0.5) + offset)
            offset += rows.shape[0]
            found.append(rows)
        if not found:
            return torch.zeros(0, 9)
        rows = torch.cat(found, dim=0)[torch.cat(picks)]
        return rows[_batched_nms(rows[:, :4], rows[:, 4], 0.7)]

    @torch.no_grad()
    def detect(self, img_rgb_uint8):
        arr = np.asarray(img_rgb_uint8)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError("expected an H x W x 3 uint8 RGB image")
        # N x H x W x C viewed as N x C x H x W (not copied), as facenet-pytorch does it.
        img = torch.as_tensor(arr[None].copy()).permute(0, 3, 1, 2).float()
        h, w = arr.shape[:2]
        th = self.thresholds

        rows = self._proposals(img, h, w)
        rw = rows[:, 2] - rows[:, 0]
        rh = rows[:, 3] - rows[:, 1]
        boxes = torch.stack([rows[:, 0] + rows[:, 5] * rw, rows[:, 1] + rows[:, 6] * rh,
                             rows[:, 2] + rows[:, 7] * rw, rows[:, 3] + rows[:, 8] * rh,
                             rows[:, 4]], dim=1)
        boxes = _square(boxes)

        if len(boxes):  # stage 2: R-Net
            reg, prob = _run_batched(self.rnet, self._crops(img, boxes, w, h, 24))
            score = prob[:, 1]
            ok = score > th[1]
            boxes = torch.cat([boxes[ok, :4], score[ok].unsqueeze(1)], dim=1)
            reg = reg[ok]
            keep = _batched_nms(boxes[:, :4], boxes[:, 4], 0.7)
            boxes = _square(_regress(boxes[keep], reg[keep]))

        points = torch.zeros(0, 5, 2)
        if len(boxes):  # stage 3: O-Net
            reg, marks, prob = _run_batched(self.onet, self._crops(img, boxes, w, h, 48))
            score = prob[:, 1]
            ok = score > th[2]
            boxes = torch.cat([boxes[ok, :4], score[ok].unsqueeze(1)], dim=1)
            reg, marks = reg[ok], marks[ok]
            bw = boxes[:, 2] - boxes[:, 0] + 1
            bh = boxes[:, 3] - boxes[:, 1] + 1
            px = bw.unsqueeze(1) * marks[:, :5] + boxes[:, 0].unsqueeze(1) - 1
            py = bh.unsqueeze(1) * marks[:, 5:] + boxes[:, 1].unsqueeze(1) - 1
            points = torch.stack([px, py], dim=2)
            boxes = _regress(boxes, reg)
            keep = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
            boxes, points = boxes[keep], points[keep]

        boxes, points = boxes.numpy(), points.numpy()
        if len(boxes) == 0:
            return None, [None], None
        order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
        boxes, points = boxes[order], points[order]
        return boxes[:, :4], boxes[:, 4], points


def check(golden_path, data_dir, weights_dir, box_tol=1e-3, prob_tol=1e-4):
    """Every golden image through MtcnnPeer; prints the differences; True when all are within."""
    import cv2

    golden = json.loads(pathlib.Path(golden_path).read_text())
    peer = MtcnnPeer(weights_dir)
    worst = {"box": 0.0, "landmarks": 0.0, "prob": 0.0}
    ok = True
    print(f"{'image':44} {'faces':>7} {'box px':>9} {'marks px':>9} {'prob':>9}")
    for entry in golden["images"]:
        bgr = cv2.imread(str(pathlib.Path(data_dir) / entry["image"]), cv2.IMREAD_COLOR)
        boxes, probs, points = peer.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        want = entry["faces"]
        got = 0 if boxes is None else len(boxes)
        line = f"{entry['image']:44} {got:>3}/{len(want):<3}"
        if got != len(want):
            ok = False
            print(line + "  face count differs")
            continue
        if got == 0:
            print(line + f" {0:9.2e} {0:9.2e} {0:9.2e}")
            continue
        diff = {
            "box": np.abs(boxes.astype(np.float64) - np.array([f["box"] for f in want])).max(),
            "landmarks": np.abs(points.astype(np.float64) - np.array([f["landmarks"] for f in want])).max(),
            "prob": np.abs(probs.astype(np.float64) - np.array([f["prob"] for f in want])).max(),
        }
        for k, v in diff.items():
            worst[k] = max(worst[k], v)
        ok &= diff["box"] <= box_tol and diff["landmarks"] <= box_tol and diff["prob"] <= prob_tol
        print(line + f" {diff['box']:9.2e} {diff['landmarks']:9.2e} {diff['prob']:9.2e}")
    print(json.dumps({"images": len(golden["images"]), "faces": golden["num_faces"],
                      "max_box_px": worst["box"], "max_landmark_px": worst["landmarks"],
                      "max_prob": worst["prob"], "box_tol": box_tol, "prob_tol": prob_tol,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "ok": bool(ok)}))
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare against facenet-pytorch's goldens")
    p.add_argument("--golden", default=str(SHARED / "golden" / "mtcnn" / "detections.json"))
    p.add_argument("--data", default=str(SHARED / "data"), help="folder the golden's image paths are relative to")
    p.add_argument("--weights", default=str(SHARED / "weights" / "mtcnn"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("images", nargs="*", help="images to detect faces in (prints JSON per image)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.check:
        sys.exit(0 if check(a.golden, a.data, a.weights) else 1)
    if not a.images:
        p.error("give --check or images")
    import cv2

    peer = MtcnnPeer(a.weights)
    for path in a.images:
        boxes, probs, points = peer.detect(cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
        faces = [] if boxes is None else [
            {"box": b.tolist(), "prob": float(s), "landmarks": m.tolist()} for b, s, m in zip(boxes, probs, points)]
        print(json.dumps({"image": path, "faces": faces}))


if __name__ == "__main__":
    main()
