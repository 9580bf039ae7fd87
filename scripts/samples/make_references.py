#!/usr/bin/python3
"""Reference outputs for the GpuBridge samples (issue 5), computed with well-known libraries.

Run from anywhere with Debian's interpreter (the libraries are Debian packages):

    /usr/bin/python3 scripts/samples/make_references.py

Inputs come from ../shared/data (relative to the project root); every output goes to
tests/samples/data/, and tests/samples/data/manifest.json describes each file: what produced it,
its parameters, and the tolerance a C++ result should meet. Nothing is random, so running the script
twice gives the same files (PNG bytes may change with another zlib, their pixels do not).

Conventions the C++ side must match (also written into manifest.json):
- Matrices: float64 Matrix Market `array real general`, column-major, 17 significant digits.
- Images: float32 .npy, shape (H, W) or (H, W, C), channel order R, G, B; pixel values 0..255.
  * resize: cv2.resize(INTER_LINEAR) on float32 input. Pixel-centre rule: src = (dst + 0.5) * in/out
    - 0.5; x0 = floor(src), f = src - x0; if x0 < 0 then x0 = 0, f = 0; if x0 >= in - 1 then
    x0 = in - 1, f = 0; value = (1 - f) * p[x0] + f * p[x0 + 1]; rows then columns alike.
  * Gaussian blur with sigma s: kernel size k = round(8 s + 1) | 1 (OpenCV's rule for float input:
    s=1.5 -> 13, s=3 -> 25), taps exp(-i^2 / (2 s^2)) for i = -(k-1)/2 .. (k-1)/2 normalised to
    sum 1, separable (rows then columns), border reflect-101 (dcb|abcd|cba). The script passes
    that k explicitly and checks it against ksize=(0, 0) and scipy.ndimage.gaussian_filter.
  * Sobel: ksize 3, float32 output, reflect-101. dx is the correlation with
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dy with its transpose; magnitude = sqrt(dx^2 + dy^2).
  * filter2D: correlation (not convolution) with the kernel file, anchor at the kernel centre,
    reflect-101, float32.
- Graphs: TSV `node_id<TAB>value` sorted by node id; `inf` for unreachable (sssp), -1 (bfs).
  Parallel edges are merged with their weights summed. An undirected edge {u, v} is the two arcs
  u->v and v->u; an undirected self-loop {u, u} is the single arc u->u (networkx's convention).
  PageRank: damping 0.85, uniform teleport, dangling nodes (no out-weight) spread uniformly,
  transition u->v proportional to the arc weight (1 for unweighted graphs).
"""

import json
import math
import os
import sys

import cv2
import igraph
import networkx as nx
import numpy as np
import PIL
import scipy
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.sparse
import scipy.sparse.csgraph
from PIL import Image as PILImage

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
OUT = os.path.join(ROOT, "tests", "samples", "data")
SKIMAGE_DATA = "/usr/lib/python3/dist-packages/skimage/data"

manifest = {
    "generator": "scripts/samples/make_references.py",
    "versions": {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "networkx": nx.__version__,
        "igraph": igraph.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
    },
    "inputs": {},
    "matrices": [],
    "images": [],
    "png_variants": [],
    "graphs": [],
}


def out_path(name):
    return os.path.join(OUT, name)


def check(condition, what):
    if not condition:
        sys.exit("make_references: cross-check failed: " + what)


# ---------------------------------------------------------------- writers

def write_mtx(name, matrix, comment):
    matrix = np.asarray(matrix, dtype=np.float64)
    rows, cols = matrix.shape
    lines = ["%%MatrixMarket matrix array real general", "% " + comment, f"{rows} {cols}"]
    for value in matrix.T.reshape(-1):  # column-major
        lines.append("%.17g" % value)
    with open(out_path(name), "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


def write_npy(name, array):
    array = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    np.save(out_path(name), array, allow_pickle=False)


def write_tsv(name, values, integer):
    with open(out_path(name), "w", encoding="ascii") as f:
        for node in sorted(values):
            value = values[node]
            if integer:
                text = str(int(value))
            elif math.isinf(value):
                text = "inf"
            else:
                text = "%.17g" % value
            f.write(f"{node}\t{text}\n")


# ---------------------------------------------------------------- matrices

def make_matrices():
    path = os.path.join(SHARED, "matrices", "pores_1.mtx")
    a = scipy.io.mmread(path).toarray().astype(np.float64)
    check(a.shape == (30, 30), "pores_1 is 30x30")
    manifest["inputs"]["pores_1"] = {
        "path": "../shared/data/matrices/pores_1.mtx", "rows": 30, "cols": 30,
        "stored_entries": 180,
        "known_entries_1based": [[1, 1, float(a[0, 0])], [2, 1, float(a[1, 0])],
                                 [1, 2, float(a[0, 1])], [30, 30, float(a[29, 29])]],
        "nonzeros": int(np.count_nonzero(a)),
    }

    write_mtx("pores_1_transpose.mtx", a.T, "transpose of pores_1 (numpy)")
    manifest["matrices"].append({
        "file": "pores_1_transpose.mtx", "input": "pores_1", "operation": "transpose",
        "tolerance": "exact (a transpose only moves values)"})

    square = a @ a
    write_mtx("pores_1_square.mtx", square, "pores_1 * pores_1 (numpy float64)")
    manifest["matrices"].append({
        "file": "pores_1_square.mtx", "input": "pores_1", "operation": "matmul A*A",
        "precision": "float64 reference",
        "tolerance": "float32 GEMM: |C - Cref|_ij <= 1e-5 * (|A| |A|)_ij elementwise "
                     "(GEMM error bound n * eps32 with n = 30); float64: 1e-12 * (|A| |A|)_ij"})

    inverse = np.linalg.inv(a)
    cond2 = float(np.linalg.cond(a, 2))
    cond1 = float(np.linalg.cond(a, 1))
    residual = float(np.max(np.abs(a @ inverse - np.eye(30))))
    # A second inverse by another algorithm (SVD): the spread between the two shows how many
    # digits of the inverse are meaningful for this condition number.
    svd_inverse = np.linalg.pinv(a, rcond=1e-15)
    spread = float(np.max(np.abs(svd_inverse - inverse)) / np.max(np.abs(inverse)))
    check(spread < 1e-8, f"LU and SVD inverses agree (spread {spread:g})")
    write_mtx("pores_1_inverse.mtx", inverse,
              f"inverse of pores_1 (numpy.linalg.inv, float64); cond2 = {cond2:.6g}")
    manifest["matrices"].append({
        "file": "pores_1_inverse.mtx", "input": "pores_1", "operation": "inverse",
        "precision": "float64 (numpy.linalg.inv, LAPACK getrf/getri)",
        "condition_number_2norm": cond2, "condition_number_1norm": cond1,
        "numpy_identity_residual_max": residual,
        "lu_vs_svd_inverse_relative_spread": spread,
        "tolerance": "max|X - Xref| / max|Xref| <= 1e-8 (cond2 * eps64 is about 4e-10); "
                     "identity check: max|A X - I| <= 1e-8 (numpy's own residual is "
                     f"{residual:.3g}; entries of A reach 2.5e7, so the products cancel heavily)"})


# ---------------------------------------------------------------- images

def read_grey(path):
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    check(image is not None and image.dtype == np.uint8 and image.ndim == 2, path + " is 8-bit grey")
    # Independent decoder: Pillow must give the same pixels.
    check(np.array_equal(np.asarray(PILImage.open(path)), image), path + " decodes alike in Pillow")
    return image


def bilinear_resize_numpy(image, out_h, out_w):
    """The pixel-centre rule of the module docstring, written out in float64."""
    def axis_weights(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x0 = np.floor(src).astype(np.int64)
        f = src - x0
        low = x0 < 0
        x0[low], f[low] = 0, 0.0
        high = x0 >= n_in - 1
        x0[high], f[high] = n_in - 1, 0.0
        x1 = np.minimum(x0 + 1, n_in - 1)
        return x0, x1, f
    r0, r1, fr = axis_weights(image.shape[0], out_h)
    c0, c1, fc = axis_weights(image.shape[1], out_w)
    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    top = img[r0][:, c0] * (1 - fc)[None, :, None] + img[r0][:, c1] * fc[None, :, None]
    bottom = img[r1][:, c0] * (1 - fc)[None, :, None] + img[r1][:, c1] * fc[None, :, None]
    out = top * (1 - fr)[:, None, None] + bottom * fr[:, None, None]
    return out[:, :, 0] if image.ndim == 2 else out


def gaussian_ksize(sigma):
    return int(round(sigma * 4 * 2 + 1)) | 1


def add_image(entry, array):
    write_npy(entry["file"], array)
    entry["shape"] = list(np.asarray(array).shape)
    entry["dtype"] = "float32"
    manifest["images"].append(entry)


def make_images():
    camera = read_grey(os.path.join(SHARED, "images", "camera.png"))
    coins = read_grey(os.path.join(SHARED, "images", "coins.png"))
    check(camera.shape == (512, 512) and coins.shape == (303, 384), "image shapes")
    for name, image in (("camera", camera), ("coins", coins)):
        h, w = image.shape
        manifest["inputs"][name] = {
            "path": f"../shared/data/images/{name}.png", "height": h, "width": w, "channels": 1,
            "pixel_sum": int(image.astype(np.int64).sum()),
            "known_pixels_row_col_value": [[0, 0, int(image[0, 0])], [h // 2, w // 3, int(image[h // 2, w // 3])],
                                           [h - 1, w - 1, int(image[h - 1, w - 1])]]}

    # Small real crops keep the filter references small while keeping every border case.
    camera_crop = np.ascontiguousarray(camera[150:247, 200:331])  # 97 x 131
    cv2.imwrite(out_path("camera_crop.png"), camera_crop)
    check(np.array_equal(cv2.imread(out_path("camera_crop.png"), cv2.IMREAD_UNCHANGED), camera_crop),
          "camera_crop.png round trip")
    manifest["inputs"]["camera_crop"] = {
        "path": "tests/samples/data/camera_crop.png", "height": 97, "width": 131, "channels": 1,
        "origin": "camera.png rows 150..246, columns 200..330",
        "pixel_sum": int(camera_crop.astype(np.int64).sum())}

    astronaut = np.asarray(PILImage.open(os.path.join(SKIMAGE_DATA, "astronaut.png")).convert("RGB"))
    astro_crop = np.ascontiguousarray(astronaut[40:88, 180:244])  # 48 x 64 x 3, RGB order
    PILImage.fromarray(astro_crop, "RGB").save(out_path("astronaut_crop.png"))
    manifest["inputs"]["astronaut_crop"] = {
        "path": "tests/samples/data/astronaut_crop.png", "height": 48, "width": 64, "channels": 3,
        "origin": "scikit-image astronaut.png (NASA, public domain) rows 40..87, columns 180..243",
        "pixel_sum": int(astro_crop.astype(np.int64).sum()),
        "known_pixels_row_col_rgb": [[0, 0, [int(v) for v in astro_crop[0, 0]]],
                                     [47, 63, [int(v) for v in astro_crop[47, 63]]]]}

    # OpenCV computes source coordinates in float32: on a 512-pixel axis that moves a sample by up to
    # ~3e-5 pixels, i.e. up to ~0.01 in value where neighbours differ by 255.
    resize_tolerance = "max abs difference 1e-2 (float32 source coordinates), mean abs difference 1e-3"
    resize_jobs = [("camera", camera, 128, 128), ("camera", camera, 100, 77),
                   ("coins", coins, 151, 192), ("coins", coins, 64, 80),
                   ("camera_crop", camera_crop, 131, 173), ("astronaut_crop", astro_crop, 37, 90)]
    for name, image, out_h, out_w in resize_jobs:
        result = cv2.resize(image.astype(np.float32), (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        ours = bilinear_resize_numpy(image, out_h, out_w)
        diff = float(np.max(np.abs(result - ours)))
        check(diff < 1e-2, f"resize {name} {out_h}x{out_w}: cv2 vs pixel-centre rule ({diff:g})")
        add_image({"file": f"{name}_resize_h{out_h}_w{out_w}.npy", "input": name, "operation": "resize",
                   "height": out_h, "width": out_w, "library": "cv2.resize INTER_LINEAR, float32 input",
                   "cross_check_max_abs_diff": diff, "tolerance": resize_tolerance}, result)

    blur_tolerance = "max abs difference 1e-3"
    for name, image, sigmas in (("camera_crop", camera_crop, (1.5, 3.0)), ("coins", coins, (3.0,)),
                                ("astronaut_crop", astro_crop, (1.5,))):
        src = image.astype(np.float32)
        for sigma in sigmas:
            k = gaussian_ksize(sigma)
            result = cv2.GaussianBlur(src, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
            auto = cv2.GaussianBlur(src, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
            check(np.array_equal(result, auto), f"explicit ksize {k} equals OpenCV's own for sigma {sigma}")
            truncate = ((k - 1) // 2) / sigma  # scipy's radius = round(truncate * sigma) = (k - 1) / 2
            planes = [src] if src.ndim == 2 else [src[:, :, c] for c in range(src.shape[2])]
            ref = np.stack([scipy.ndimage.gaussian_filter(p.astype(np.float64), sigma=sigma, mode="mirror",
                                                          truncate=truncate) for p in planes], axis=-1)
            ref = ref[:, :, 0] if src.ndim == 2 else ref
            diff = float(np.max(np.abs(result - ref)))
            check(diff < 1e-3, f"GaussianBlur {name} sigma {sigma}: cv2 vs scipy ({diff:g})")
            tag = str(sigma).replace(".", "p")
            add_image({"file": f"{name}_blur_sigma{tag}.npy", "input": name, "operation": "gaussian_blur",
                       "sigma": sigma, "ksize": k, "border": "reflect-101",
                       "library": "cv2.GaussianBlur, float32 input", "cross_check": "scipy.ndimage.gaussian_filter",
                       "cross_check_max_abs_diff": diff, "tolerance": blur_tolerance}, result)

    src = camera_crop.astype(np.float32)
    dx = cv2.Sobel(src, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    dy = cv2.Sobel(src, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    magnitude = cv2.magnitude(dx, dy)
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    check(np.max(np.abs(dx - scipy.ndimage.correlate(src.astype(np.float64), sobel_x, mode="mirror"))) < 1e-3,
          "Sobel dx vs scipy correlate")
    check(np.max(np.abs(dy - scipy.ndimage.correlate(src.astype(np.float64), sobel_x.T, mode="mirror"))) < 1e-3,
          "Sobel dy vs scipy correlate")
    for part, array in (("dx", dx), ("dy", dy), ("magnitude", magnitude)):
        add_image({"file": f"camera_crop_sobel_{part}.npy", "input": "camera_crop", "operation": f"sobel_{part}",
                   "ksize": 3, "border": "reflect-101", "library": "cv2.Sobel (CV_32F), cv2.magnitude",
                   "tolerance": "max abs difference 1e-3"}, array)

    # An asymmetric 3 x 5 kernel of exact binary fractions: a flipped (convolution) or transposed
    # kernel gives a visibly different result.
    kernel = np.array([[0.0625, 0.125, -0.25, 0.5, 0.03125],
                       [-1.0, 0.0, 1.0, 2.0, -0.5],
                       [0.25, 0.75, 0.0, -0.125, 0.0625]], dtype=np.float64)
    with open(out_path("kernel_asym_3x5.txt"), "w", encoding="ascii") as f:
        f.write("# 3 x 5 asymmetric correlation kernel (rows of whitespace-separated numbers)\n")
        for row in kernel:
            f.write(" ".join("%.17g" % v for v in row) + "\n")
    for name, image in (("camera_crop", camera_crop), ("coins", coins)):
        src = image.astype(np.float32)
        result = cv2.filter2D(src, cv2.CV_32F, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
        ref = scipy.ndimage.correlate(src.astype(np.float64), kernel, mode="mirror")
        diff = float(np.max(np.abs(result - ref)))
        check(diff < 1e-3, f"filter2D {name} vs scipy correlate ({diff:g})")
        if name == "coins":
            continue  # checked, not stored: the camera crop keeps the data small
        add_image({"file": f"{name}_filter2d_kernel_asym_3x5.npy", "input": name, "operation": "filter2d",
                   "kernel_file": "kernel_asym_3x5.txt", "anchor": "kernel centre", "border": "reflect-101",
                   "library": "cv2.filter2D (correlation), float32", "cross_check": "scipy.ndimage.correlate",
                   "cross_check_max_abs_diff": diff, "tolerance": "max abs difference 1e-3"}, result)


def make_png_variants():
    """Tiny PNGs in the formats the reader accepts or rejects, with Pillow's decoding as expected."""
    rng_values = (np.arange(5 * 7 * 4, dtype=np.int64) * 37 % 256).astype(np.uint8).reshape(5, 7, 4)
    variants = []
    rgba = PILImage.fromarray(rng_values, "RGBA")
    rgba.save(out_path("png_rgba.png"))
    variants.append(("png_rgba.png", "RGBA 8-bit: alpha dropped", rng_values[:, :, :3]))
    la = PILImage.fromarray(rng_values[:, :, :2].copy(), "LA")
    la.save(out_path("png_grey_alpha.png"))
    variants.append(("png_grey_alpha.png", "grey+alpha 8-bit: alpha dropped", rng_values[:, :, 0]))
    palette = PILImage.fromarray(rng_values[:, :, :3].copy(), "RGB").quantize(colors=16, method=PILImage.MEDIANCUT)
    palette.save(out_path("png_palette.png"))
    variants.append(("png_palette.png", "palette: converted to RGB",
                     np.asarray(PILImage.open(out_path("png_palette.png")).convert("RGB"))))
    bilevel = PILImage.fromarray((rng_values[:, :, 0] > 127).astype(np.uint8) * 255, "L").convert("1")
    bilevel.save(out_path("png_grey_1bit.png"))
    variants.append(("png_grey_1bit.png", "1-bit grey: expanded to 0/255",
                     np.asarray(PILImage.open(out_path("png_grey_1bit.png")).convert("L"))))
    for file, note, expected in variants:
        decoded = cv2.imread(out_path(file), cv2.IMREAD_UNCHANGED)
        check(decoded is not None, file + " decodes in OpenCV")
        expected_file = file.replace(".png", "_expected.npy")
        write_npy(expected_file, expected.astype(np.float32))
        manifest["png_variants"].append({"file": file, "expected": expected_file, "note": note,
                                         "shape": list(expected.shape)})
    grey16 = (np.arange(5 * 7, dtype=np.uint16) * 1500).reshape(5, 7)
    cv2.imwrite(out_path("png_grey_16bit.png"), grey16)
    manifest["png_variants"].append({"file": "png_grey_16bit.png", "expected": None,
                                     "note": "16-bit grey: rejected (unimplemented)"})


# ---------------------------------------------------------------- graphs

def pagerank_power(graph, weighted, alpha=0.85, l1_stop=1e-15):
    """Power iteration on the arc list of `graph` (a networkx DiGraph or Graph)."""
    nodes = list(graph.nodes())
    index = {n: i for i, n in enumerate(nodes)}
    n = len(nodes)
    out_weight = np.zeros(n)
    arcs = []
    directed = graph.to_directed()
    for u, v, data in directed.edges(data=True):
        w = float(data.get("weight", 1.0)) if weighted else 1.0
        arcs.append((index[u], index[v], w))
        out_weight[index[u]] += w
    rank = np.full(n, 1.0 / n)
    for _ in range(100000):
        nxt = np.zeros(n)
        for u, v, w in arcs:
            nxt[v] += alpha * rank[u] * w / out_weight[u]
        dangling = rank[out_weight == 0].sum()
        nxt += (alpha * dangling + (1 - alpha)) / n
        change = np.abs(nxt - rank).sum()
        rank = nxt
        if change < l1_stop:
            return {nodes[i]: float(rank[i]) for i in range(n)}
    sys.exit("make_references: PageRank did not converge")


def igraph_of(graph, weighted):
    """A directed igraph of the arcs of `graph`: an undirected self-loop stays one arc (igraph's own
    undirected graphs count it twice, networkx and these samples once)."""
    nodes = list(graph.nodes())
    index = {n: i for i, n in enumerate(nodes)}
    arcs = list(graph.to_directed().edges(data=True))
    g = igraph.Graph(n=len(nodes), directed=True)
    g.add_edges([(index[u], index[v]) for u, v, _ in arcs])
    if weighted:
        g.es["weight"] = [float(d.get("weight", 1.0)) for _, _, d in arcs]
    return g, nodes


def graph_references(prefix, graph, source, weighted, description):
    levels = nx.single_source_shortest_path_length(graph, source)
    bfs = {n: levels.get(n, -1) for n in graph.nodes()}
    write_tsv(f"{prefix}_bfs_from_{source}.tsv", bfs, integer=True)

    weight = "weight" if weighted else None
    dist = nx.single_source_dijkstra_path_length(graph, source, weight=weight or (lambda u, v, d: 1.0))
    sssp = {n: float(dist.get(n, math.inf)) for n in graph.nodes()}
    g, order = igraph_of(graph, weighted)
    ig = g.distances(source=[order.index(source)], weights="weight" if weighted else None, mode="out")[0]
    for i, n in enumerate(order):
        check(ig[i] == sssp[n] or abs(ig[i] - sssp[n]) <= 1e-12 * max(1.0, abs(sssp[n])),
              f"{prefix} sssp igraph vs networkx at {n}")
    write_tsv(f"{prefix}_sssp_from_{source}.tsv", sssp, integer=False)

    rank = pagerank_power(graph, weighted)
    nx_rank = nx.pagerank(graph, alpha=0.85, tol=1e-15, max_iter=100000, weight=weight)
    ig_rank = g.pagerank(damping=0.85, weights="weight" if weighted else None, directed=True)
    nx_diff = max(abs(rank[n] - nx_rank[n]) for n in graph.nodes())
    ig_diff = max(abs(rank[order[i]] - ig_rank[i]) for i in range(len(order)))
    check(nx_diff < 1e-12, f"{prefix} pagerank vs networkx ({nx_diff:g})")
    check(ig_diff < 1e-10, f"{prefix} pagerank vs igraph PRPACK ({ig_diff:g})")
    suffix = "_weighted" if weighted else ""
    write_tsv(f"{prefix}_pagerank{suffix}.tsv", rank, integer=False)

    manifest["graphs"].append({
        "input": description, "directed": graph.is_directed(), "weighted": weighted,
        "nodes": graph.number_of_nodes(), "merged_edges": graph.number_of_edges(),
        "bfs": {"file": f"{prefix}_bfs_from_{source}.tsv", "source": source, "library": "networkx",
                "tolerance": "exact"},
        "sssp": {"file": f"{prefix}_sssp_from_{source}.tsv", "source": source,
                 "library": "networkx Dijkstra, cross-checked with igraph",
                 "weights": "edge weights" if weighted else "unit weights", "tolerance": "relative 1e-12"},
        "pagerank": {"file": f"{prefix}_pagerank{suffix}.tsv", "damping": 0.85,
                     "library": "numpy power iteration, L1 change < 1e-15",
                     "cross_check_networkx_max_abs_diff": nx_diff, "cross_check_igraph_max_abs_diff": ig_diff,
                     "tolerance": "max abs difference 1e-9 (C++ stops at L1 change 1e-10)"}})


def make_graphs():
    karate = nx.read_gml(os.path.join(SHARED, "graphs", "karate.gml"), label="id")
    check(not karate.is_directed() and karate.number_of_nodes() == 34 and karate.number_of_edges() == 78,
          "karate is undirected with 34 nodes and 78 edges")
    manifest["inputs"]["karate"] = {"path": "../shared/data/graphs/karate.gml", "directed": False,
                                    "nodes": 34, "edges": 78, "first_node_id": 1, "last_node_id": 34}
    graph_references("karate", karate, 1, False, "../shared/data/graphs/karate.gml")

    # Our own weighted undirected GML: parallel edges (to be summed, also written reversed), a
    # self-loop, weights given as `weight` or `value`, and node 60 with no edges (unreachable).
    nodes = [(10, "a"), (20, "b"), (30, "c"), (40, "d"), (50, "e"), (60, "isolated")]
    raw_edges = [(10, 20, "weight", 1.5), (20, 30, "weight", 2.0), (10, 30, "value", 5.0),
                 (30, 40, "weight", 0.5), (20, 10, "weight", 1.0), (40, 50, "value", 3.25),
                 (50, 50, "weight", 2.0), (40, 30, "weight", 0.25), (10, 50, "weight", 10.0)]
    with open(out_path("weighted_undirected.gml"), "w", encoding="ascii") as f:
        f.write("# Test graph for the GpuBridge samples, written by scripts/samples/make_references.py\n")
        f.write("graph [\n  directed 0\n  comment \"parallel edges are summed; node 60 is unreachable\"\n")
        f.write("  attributes [ nested [ skipped 1 ] ]\n")
        for node_id, label in nodes:
            f.write(f"  node [ id {node_id} label \"{label}\" size 2.5 ]\n")
        for u, v, key, w in raw_edges:
            f.write(f"  edge [ source {u} target {v} {key} {w} ]\n")
        f.write("]\n")
    undirected = nx.Graph()
    undirected.add_nodes_from(n for n, _ in nodes)
    for u, v, _, w in raw_edges:
        if undirected.has_edge(u, v):
            undirected[u][v]["weight"] += w
        else:
            undirected.add_edge(u, v, weight=w)
    check(undirected.number_of_edges() == 7, "weighted_undirected merges to 7 edges")
    graph_references("weighted_undirected", undirected, 10, True, "tests/samples/data/weighted_undirected.gml")

    # Our own weighted directed edge list: int64 ids, parallel arcs, a self-loop, and node 7 that
    # has only outgoing arcs (unreachable from 1); 9000000000 (> 2^32) exercises 64-bit ids.
    arcs = [(1, 2, 4.0), (1, 3, 1.0), (3, 2, 2.0), (2, 4, 1.0), (3, 4, 5.0), (1, 2, 0.5),
            (4, 9000000000, 3.0), (7, 1, 1.0), (7, 4, 2.0), (4, 4, 1.0), (9000000000, 3, 0.125)]
    with open(out_path("weighted_directed.edges"), "w", encoding="ascii") as f:
        f.write("# Test graph for the GpuBridge samples: u v weight per line\n# directed\n")
        for u, v, w in arcs:
            f.write(f"{u} {v} {w}\n")
    directed = nx.DiGraph()
    for u, v, w in arcs:
        if directed.has_edge(u, v):
            directed[u][v]["weight"] += w
        else:
            directed.add_edge(u, v, weight=w)
    check(directed.number_of_edges() == 10, "weighted_directed merges to 10 arcs")
    graph_references("weighted_directed", directed, 1, True, "tests/samples/data/weighted_directed.edges")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_matrices()
    make_images()
    make_png_variants()
    make_graphs()
    with open(out_path("manifest.json"), "w", encoding="ascii") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(out_path(n)) for n in os.listdir(OUT))
    print(f"make_references: wrote {len(os.listdir(OUT))} files, {total / 1e6:.2f} MB, into {OUT}")


if __name__ == "__main__":
    main()
