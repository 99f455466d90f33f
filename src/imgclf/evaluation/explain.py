"""Looking inside a trained model: Grad-CAM heat maps and penultimate-layer embeddings.

Every registered model is ``image -> preprocess -> backbone -> pool -> dropout ->
classifier``, with the backbone a nested Keras model. Grad-CAM needs the last
4-D (batch, height, width, channels) feature map; it is found by walking the
model's graph backwards, never by a layer name, so it works for small_cnn,
keras.applications backbones and any architecture registered later. The
embedding is the input of the 'classifier' Dense layer.
"""

from __future__ import annotations

import numpy as np

from imgclf.core.errors import UserError


def _outer_outputs(layer) -> list:
    # The tensors a layer produced *in the enclosing model's graph*. For a
    # nested model, `layer.output` is its own internal output, which is not
    # connected to the outer inputs; the call node holds the outer one.
    nodes = getattr(layer, "_inbound_nodes", [])
    return list(nodes[-1].output_tensors) if nodes else [layer.output]


def find_feature_map(model):
    """The last 4-D output in the model's top-level graph, and the name of the layer that makes it.

    For every registry model this is the nested backbone's output: the last
    convolutional feature map, where Grad-CAM is meant to look.

    Example:
        >>> tensor, name = find_feature_map(imgclf.load("runs/leaves").model)
        >>> name, tensor.shape
        ('backbone', (None, 4, 4, 96))
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        outputs = _outer_outputs(layer)
        if len(outputs) == 1 and len(outputs[0].shape) == 4:
            return outputs[0], layer.name
    raise UserError(
        f"Model {model.name!r} has no 4-D feature map (batch, height, width, channels), so Grad-CAM cannot "
        "show where it looks. Grad-CAM needs a convolutional model."
    )


def _classifier_input(model):
    try:
        classifier = model.get_layer("classifier")
    except ValueError:
        return None, None
    node = classifier._inbound_nodes[-1]
    return node.input_tensors[0], classifier


def gradcam(model, images: np.ndarray, class_index=None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heat maps in [0, 1], one per image, at the images' resolution (N, H, W).

    The score differentiated is the class's pre-softmax logit (computed from the
    classifier's input and weights), not its probability, which saturates for
    confident predictions. `class_index` defaults to each image's predicted class.

    Example:
        >>> clf = imgclf.load("runs/leaves")
        >>> maps = gradcam(clf.model, clf.decode("cat.jpg")[None])
        >>> maps.shape
        (1, 16, 16)
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras
    import tensorflow as tf

    feature, _ = find_feature_map(model)
    pen, classifier = _classifier_input(model)
    outputs = [feature, pen] if classifier is not None else [feature, model.outputs[0]]
    grad_model = keras.Model(model.inputs, outputs)
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    maps = np.zeros((n, h, w), dtype=np.float32)
    targets = None if class_index is None else np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,))
    for start in range(0, n, batch_size):
        x = tf.convert_to_tensor(images[start:start + batch_size], dtype=tf.float32)
        with tf.GradientTape() as tape:
            fmap, head = grad_model(x, training=False)
            if classifier is not None:
                kernel, bias = classifier.kernel, classifier.bias
                logits = tf.matmul(tf.cast(head, tf.float32), tf.cast(kernel, tf.float32)) + tf.cast(bias, tf.float32)
            else:
                logits = tf.math.log(tf.cast(head, tf.float32) + 1e-9)
            target = tf.argmax(logits, axis=1) if targets is None else tf.constant(targets[start:start + len(x)])
            score = tf.reduce_sum(tf.gather(logits, target, axis=1, batch_dims=1))
        grads = tf.cast(tape.gradient(score, fmap), tf.float32)
        fmap = tf.cast(fmap, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))[..., None]
        cam = tf.image.resize(cam, (h, w), method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1)
        maps[start:start + len(cam)] = cam / np.where(peak > 0, peak, 1.0)[:, None, None]
    return maps


def embeddings(model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Penultimate-layer features (the input of the 'classifier' layer), float32 (N, D).

    Example:
        >>> clf = imgclf.load("runs/leaves")
        >>> images = np.stack([clf.decode(p) for p in ["a.png", "b.png"]])
        >>> feats = embeddings(clf.model, images)
        >>> feats.shape
        (2, 96)
    """
    # lazy: Keras imports TensorFlow (seconds); only code that runs a model pays for it
    import keras
    import tensorflow as tf

    pen, classifier = _classifier_input(model)
    if classifier is None:
        raise UserError(f"Model {model.name!r} has no layer named 'classifier', so it has no embedding to show.")
    feature_model = keras.Model(model.inputs, pen)
    fn = tf.function(lambda x: feature_model(x, training=False), reduce_retracing=True)
    images = np.asarray(images)
    parts = [np.asarray(tf.cast(fn(tf.convert_to_tensor(images[i:i + batch_size], dtype=tf.float32)), tf.float32))
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, pen.shape[-1]), dtype=np.float32)


def project(features: np.ndarray, methods=("pca", "tsne", "umap"), seed: int = 0, max_points: int = 1000) -> dict:
    """2-D projections of embeddings: PCA always, t-SNE (scikit-learn), UMAP when umap-learn is installed.

    Returns ``{"index": rows used, "pca": (n, 2), ...}``; above `max_points`
    rows a seeded random subset is projected: t-SNE costs about 10 s per
    thousand points on a busy two-core CPU, and a thousand points already
    show the structure.

    Example:
        >>> proj = project(np.random.default_rng(0).normal(size=(20, 8)))
        >>> sorted(proj)
        ['index', 'pca', 'tsne']
    """
    features = np.asarray(features, dtype=np.float32)
    n = len(features)
    index = np.arange(n)
    if n > max_points:
        index = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    x = features[index]
    out = {"index": index}
    if len(x) < 3:
        return out
    centred = x - x.mean(axis=0)
    # PCA by SVD: two leading directions, signs fixed so reruns draw the same picture.
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2] * np.sign(vt[:2, :1] + 1e-12)
    pca = centred @ comps.T
    out["pca"] = pca if pca.shape[1] == 2 else np.c_[pca, np.zeros(len(pca))]
    if "tsne" in methods and len(x) >= 5:
        # lazy: scikit-learn loads only when these metrics are computed
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        # The usual recipe: t-SNE on the top 50 principal components, fewer iterations than the default 1000
        # (the layout is settled by 500 at these sizes).
        reduced = centred @ vt[:50].T
        out["tsne"] = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500).fit_transform(reduced)
    if "umap" in methods and len(x) >= 10:
        try:
            # lazy: optional extra: imgclf[umap]
            import umap  # optional: umap-learn
        except ImportError:
            pass
        else:
            out["umap"] = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1)).fit_transform(x)
    return out
