"""Parameter and attribute descriptions shared by the estimators' docstrings.

Docstrings reference them as ``{name}`` fields, filled by :func:`fill_doc`, so a shared
parameter is described once.
"""

# The training parameters every fusion estimator shares, one entry each, in signature order.
TRAINING = {
    "hidden_dims": """hidden_dims : list of int, default=None
        Widths of the hidden layers of the prediction MLP. ``None`` scales them to the
        input width (one layer of ``d // 2`` units within [16, 512]), as in Zhang et al. (2026).""",
    "standardize": """standardize : bool, default=True
        Standardize every feature of the vector blocks and token columns to zero mean
        and unit variance over the training rows that have it (learnt in ``fit``, applied
        at prediction; ``standardization_``), so raw clinical variables can be passed
        as they are. Images are left to their encoder.""",
    "linear_path": """linear_path : bool, default=True
        Put a linear model beside the network (a "wide and deep" model), on the vector
        blocks, the token means of the sequences and, for each modality that some training
        rows lack, a presence flag. It is fitted first, alone, by L-BFGS on the task's loss
        with an L2 penalty chosen by internal 3-fold cross-validation (a ridge Cox model, a
        ridge logistic regression: ``linear_alpha_``), then trained with the network; the
        epoch chosen on held-out rows may be 0, the linear model alone. So on a small cohort
        the model does not fall below its linear baseline, and finds what lies beyond it
        where the held-out rows show it (``docs/design.md``). Images reach it only through
        their presence flag.""",
    "dropout": """dropout : float, default=0.1
        Dropout after each hidden layer.""",
    "lr": """lr : float, default=1e-3
        Adam learning rate.""",
    "weight_decay": """weight_decay : float, default=1e-2
        L2 penalty on the trainable parameters (Adam's weight decay: the
        :math:`\\lambda \\lVert\\theta\\rVert_2^2` term of the loss of Zhang et al. (2026), up to a factor 2).""",
    "batch_size": """batch_size : int or "auto", default="auto"
        Mini-batch size; ``"auto"`` is a sixteenth of the training rows within [32, 256], so
        that a small cohort gets at least 16 optimizer steps an epoch. Survival batches are
        stratified so each has events. In a ``torchrun`` job, the size of the batch that the
        processes share.""",
    "max_epochs": """max_epochs : int or "auto", default="auto"
        Most passes over the training data. ``"auto"`` allows 4,000 optimizer steps, within
        [100, 1000] epochs: the same number of updates for a 200-row cohort as for a
        20,000-row one. The epoch kept is chosen on held-out rows (``early_stopping``), so
        the bound is rarely reached; when it is, while the model was still improving,
        ``fit`` warns (:class:`~sklearn.exceptions.ConvergenceWarning`).""",
    "early_stopping": """early_stopping : bool or "auto", default="auto"
        How the number of epochs is chosen. ``True``: hold out ``validation_fraction`` of the
        rows (stratified by event or class), record their loss (over all of them at once)
        before training and after each epoch, stop when it has not improved for
        ``n_iter_no_change`` epochs and restore the best epoch (0: the untrained start, the
        linear model alone with ``linear_path=True``). ``"auto"`` does so when that split
        would hold at least 100 events (survival) or 100 rows of the rarest class; below
        that, where one split would rank the epochs by noise, it trains on 3 internal
        folds in step, chooses the epoch with the lowest mean held-out loss (every row held
        out once) and refits on all rows for that many epochs. ``False``: train
        ``max_epochs`` epochs.""",
    "validation_fraction": """validation_fraction : float, default=0.1
        Share of rows held out when ``early_stopping=True`` (or ``"auto"`` on a large cohort).""",
    "n_iter_no_change": """n_iter_no_change : int or "auto", default="auto"
        Patience of early stopping, in epochs without a better held-out loss. ``"auto"``:
        the epochs of 500 optimizer steps, at least 10.""",
    "callbacks": """callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (e.g. ``skorch.callbacks.Checkpoint``), as ``(name, callback)``
        tuples or callback objects.""",
    "device": """device : {"auto", "cpu", "cuda"} or str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available. Called in every process of a
        ``torchrun`` job (``torch.distributed`` initialised), ``fit`` trains data-parallel,
        one process per device (``"auto"`` and ``"cuda"`` are the GPU of ``LOCAL_RANK``),
        with each batch's loss over the whole batch (for Cox, its global risk set); every
        process ends with the same fitted model.""",
    "random_state": """random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch order and dropout; the same value gives the same
        predictions on the same device.""",
    "verbose": """verbose : int, default=0
        Print the training log each epoch when positive.""",
}

DOCS = {
    "modalities": """modalities : list of str, default=None
        Modalities to use, in this order. ``None`` uses every modality of ``X``: the
        ``name__*`` column blocks and the token columns, in order of first appearance.""",
    "modality_dims": """modality_dims : None, list of int or dict of str to int, default=None
        How to split a plain array (or a DataFrame without ``name__`` groups) into
        modalities: ``None`` halves the columns into ``"m0"`` and ``"m1"``, a list gives
        consecutive widths named ``"m0", "m1", ...``, a dict names them.""",
    "survival_task": """loss : {"cox", "weibull", "discrete"}, default="cox"
        Survival likelihood: Cox partial likelihood with Efron ties and a Breslow baseline,
        a Weibull model, or discrete-time logistic hazards (each weighted by ``sample_weight``).
    n_durations : int or "auto", default="auto"
        Number of time bins (at event-time quantiles) for ``loss="discrete"``. ``"auto"``
        takes 5 bins when the training rows hold fewer than 1,000 events and 10 otherwise:
        on a few hundred events, 10 bins are noisy hazards (``docs/design.md``).""",
    "sequence_encoder": """sequence_encoder : {"lstm", "mean"}, default="lstm"
        How a sequence modality (a token column of ``(T_i, d)`` arrays) becomes one vector
        per row: ``"lstm"`` is the MedFuse EHR encoder, a two-layer LSTM whose last valid
        hidden state is the vector (dropout ``dropout`` on it); ``"mean"`` is the masked mean
        over the tokens (the average of slice embeddings over z of Zhang et al., 2026). A vector block is
        always used as it is.
    lstm_dim : int or "auto", default="auto"
        Hidden width of that LSTM. ``"auto"`` scales MedFuse's :math:`m = 256` to the
        training rows, :math:`256 \\sqrt{n / 42{,}628}` (the weights per row of MedFuse on
        its phenotyping stays) within [the sequence's features, 256]: 18 units for 200
        rows of 12 variables (``docs/design.md``).
""",
    "pretraining": """pretrain_encoders : bool, default=False
        Train each encoder with parameters (the LSTM of a sequence modality with
        ``sequence_encoder="lstm"``) alone on the task first, with its own temporary linear
        head and the same training settings, on the rows that have its modality; then train
        the whole network from those weights. A vector block has no encoder to pre-train.
    freeze_encoders : bool, default=False
        Keep the pre-trained encoders fixed in the second stage (needs
        ``pretrain_encoders=True``): MedMod's early and late fusion.""",
    "attributes": """layout_ : tuple of ModalitySpec
        The modalities seen in ``fit`` (name, kind, columns, width).
    standardization_ : dict of str to (ndarray, ndarray)
        Per modality, the ``(mean, scale)`` of each feature learnt in ``fit``
        (empty with ``standardize=False``).
    net_ : skorch.NeuralNet
        The trained network; ``net_.history`` holds the training log.
    n_iter_ : int
        Epochs of the final training run (with internal folds: the epochs chosen on them).
    best_epoch_ : int
        The epoch whose weights the model has: chosen on held-out rows (0: the untrained
        start, the linear model alone with ``linear_path=True``), or the last one without
        early stopping.
    linear_alpha_ : float or None
        The L2 strength of the linear start (None without one).
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit`` (DataFrame input only).""",
    "survival_attributes": """unique_times_ : ndarray
        Unique times of the training data: the grid of ``predict_survival_function(X,
        return_array=True)``.
    survival_model_ : object
        The fitted survival head (Breslow baseline for ``loss="cox"``).""",
    "class_weight": """class_weight : dict, "balanced" or None, default=None
        Weights of the classes of a binary or multi-class target, multiplied into
        ``sample_weight`` (scikit-learn's ``LogisticRegression``): ``{label: weight}``, a
        class left out weighing 1, or ``"balanced"``, ``n_samples / (n_classes * count)``
        with the counts under ``sample_weight``. ``None``: every class weighs 1. Refused for
        a multi-label target: weigh its rows with ``sample_weight``.""",
    "classifier_attributes": """classes_ : ndarray
        Class labels (``arange(n_labels)`` for multi-label targets).
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix.""",
}


# Shared by every family with encoder pre-training (skfusion.fusion._pretraining).
DOCS["pretrain_targets"] = """pretrain_targets : dict of str to str, default=None
        Labels other than the task's to pre-train a modality's encoder on:
        ``{modality: label}``, where ``label`` names columns of ``X``, either one column
        (binary or multi-class labels) or a block ``label__0, label__1, ...`` (a multi-label
        indicator matrix, e.g. the 14 radiology findings on which MedFuse pre-trains its chest
        X-ray encoder). That encoder is pre-trained as a classifier, whatever the task, on the
        rows that have the modality and a complete label (NaN marks an unlabelled row); the
        modalities not named are pre-trained on the task. The label columns are targets, not
        inputs: set aside at fit, and ignored (not needed) at predict. Being columns of ``X``,
        they follow its rows through cross-validation and pipelines. Needs
        ``pretrain_encoders=True``."""
DOCS["pretraining"] += "\n    " + DOCS["pretrain_targets"]

def parameters(entries, *, only=None, **replaced):
    """The numpydoc entries of ``entries`` (name to entry), in order, as one docstring field.

    ``only`` keeps the names it lists; ``replaced`` gives an estimator's own entry for a
    shared name (its own default or meaning), in the shared one's place.
    """
    unknown = set(replaced) - set(entries)
    if unknown:
        raise KeyError(f"no shared entries {sorted(unknown)}")
    names = [name for name in entries if only is None or name in only]
    return "\n    ".join(replaced.get(name, entries[name]) for name in names)


# The classifiers' weight decay differs from the survival models' (docs/design.md).
CLASSIFIER_WEIGHT_DECAY = TRAINING["weight_decay"].replace("default=1e-2", "default=1e-4")
DOCS["training"] = parameters(TRAINING)
DOCS["classifier_training"] = parameters(TRAINING, weight_decay=CLASSIFIER_WEIGHT_DECAY)


_IMAGE_SIZE = """image_size : int, default=224
        For an image column of file paths (PNG, JPEG, TIFF, DICOM, 2-D NIfTI; ``None`` where
        a row has no image): the side of the square the images are cropped to, after a
        resize of their shorter side to ``256 / 224`` of it, as MedFuse's preprocessing; the
        images are replicated to 3 channels and normalised with ImageNet's statistics. The
        files are read batch by batch while training, never all at once. A column of arrays
        is used as it is."""
_IMAGE_LOADING = """augment : bool, default=True
        At training time, flip each image horizontally with probability 1/2, give it
        MedFuse's random affine transform (rotation up to 45 degrees, scale 0.85 to 1.15,
        translation up to 15 %) and crop it at a random position; prediction always uses
        the centre crop. A volume file is flipped left-right with probability 1/2 and shifted
        by up to 10 % of each side (the voxels shifted in take the window's low end).
        File columns only.
    num_workers : int, default=0
        DataLoader worker processes that read and preprocess the image files ahead of the
        training loop (0: read in the main process)."""
DOCS["image_files"] = _IMAGE_SIZE + "\n    " + _IMAGE_LOADING
DOCS["volume_files"] = """volume_size : tuple of 3 int, default=(128, 128, 128)
        For a CT volume column (DICOM series folders, 3-D NIfTI files or ``(Z, H, W)`` arrays,
        in Hounsfield units; ``None`` where a row has no volume) read by a 3-D encoder: the
        ``(D, H, W)`` voxels every volume is resampled to (trilinear). Huo et al. trained on
        224^3 volumes; a 3-D DenseNet-121 forward and backward pass on one 128^3 volume takes
        about 20 s on one CPU core (5x that at 224^3), so train at that size on a GPU. Volume
        files are read batch by batch, and decoded once per fit: the resampled volumes are
        cached in a temporary folder, removed when ``fit`` ends.
    window : {"minmax", "pe", "mace"} or tuple of (float, float), default="minmax"
        The intensity scaling of a volume column, applied inside the encoder (so that
        attributions reach the HU voxels): ``"minmax"`` scales each volume from its minimum
        to its maximum into [0, 1], as Huo et al.'s MONAI ``ScaleIntensity`` does
        (``src/training/1_pretrain_TTE.py`` of som-shahlab/tte-pretraining); ``"pe"``,
        ``"mace"`` or ``(low, high)`` clip to that HU window and scale it to [0, 1], as
        :class:`~skfusion.encoders.CTVolumeEmbedder`'s ``window``. Volume columns only."""
DOCS["image_encoder"] = """image_encoder : "auto", {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}, {"densenet121-3d", "resnet18-3d", "swinunetr", "slices", ...} or torch.nn.Module, default="auto"
        The network trained on an image modality (a raw column of ``(H, W, C)`` arrays with
        ``C`` 1 or 3, one shape per column, or of image file paths): torchvision's ResNet of
        that depth without its ``fc`` layer, randomly initialised (ResNet-34, what ``"auto"``
        gives, is MedFuse's and MedMod's image encoder, 512 features; 2,048 from ResNet-50
        on; torchvision is not needed), or your own module mapping the channels-first batch
        ``(n, C, H, W)`` to ``(n, d)``, deep-copied at fit. For pre-trained weights (a local
        torchvision checkpoint: ImageNet, RadImageNet, ...), pass
        ``skfusion.encoders.load_backbone("resnet34", path)``. On a CT volume column, a 3-D
        network reading ``(n, 1, D, H, W)`` volumes resampled to ``volume_size`` and scaled by
        ``window``: MONAI's ``"densenet121-3d"`` (what ``"auto"`` gives; also 169, 201, 264),
        ``"resnet10-3d"`` ... ``"resnet200-3d"``, ``"swinunetr"`` or ``"swinvit"``
        (:func:`skfusion.modules.volumes.volume_network`, randomly initialised), ``"slices"``
        (every axial slice through a small 2-D ResNet, gated attention over ``z``: the
        network of :class:`~skfusion.ssl.TimeToEventPretraining`), or your own module mapping
        ``(n, 1, D, H, W)`` to ``(n, d)`` (deep-copied); a 2-D ResNet's name is a ValueError
        there. ``TimeToEventPretraining``'s ``image_encoder_``, which windows HU volumes
        itself, reads them as they are. Unused without an image modality.
    """ + _IMAGE_SIZE + "\n    " + DOCS["volume_files"] + "\n    " + _IMAGE_LOADING
DOCS["sequence_encoder"] = DOCS["sequence_encoder"].rstrip() + "\n    " + DOCS["image_encoder"]


def fill_doc(obj=None, /, **fields):
    """Fill the ``{name}`` fields of a docstring from :data:`DOCS` and ``fields``.

    The one docstring template of the package: ``@fill_doc`` on a class or function, or
    ``@fill_doc(name=text, ...)`` to add or override fields (a family's own descriptions).
    A filled field is not filled again, so its text may hold braces (``:math:`v_{ehr}```).
    """
    values = {**DOCS, **fields}

    def fill(target):
        target.__doc__ = target.__doc__.format(**values)
        return target

    return fill if obj is None else fill(obj)


# Image-EHR pretraining (skfusion.ssl): the parameters every method shares.
DOCS["paired_modalities"] = """image : str, default=None
        The image modality: a pre-computed embedding block ``"{image}__0", ...`` (e.g. from
        :class:`~skfusion.encoders.ImageEmbedder` or a foundation model), adapted by an MLP;
        ``None`` takes the first vector modality other than ``ehr``. With a ``backbone``: a raw
        column holding one ``(H, W, C)`` image array per row (``C`` 1 or 3), one shape per
        column, or one image file path per row (``None``: the first such column).
    ehr : str, default=None
        The EHR time series: an object column of ``(T_i, d)`` arrays (e.g. the 76-feature
        output of :class:`~skfusion.encoders.timeseries.ClinicalTimeSeriesDiscretizer`),
        read by a two-layer LSTM. ``None`` takes the first sequence modality other than the
        image (for an array: its first modality, read as a length-1 sequence).
    backbone : torch.nn.Module, default=None
        A 2-D image network mapping channels-first ``(n, C, H, W)`` batches to ``(n, d)``
        features (e.g. a torchvision ResNet-34 with ``fc = nn.Identity()``, with weights you
        load from a local file). When given, a copy of it is fine-tuned
        together with the adapter on the raw images of ``image``, and ``transform`` runs
        it; the estimator's own module is never modified. ``None``: the image is a frozen
        embedding and only the MLP adapter is trained.
    """ + DOCS["image_files"]
DOCS["paired_network"] = """projection_dim : int, default=128
        Width ``p`` of the shared space: the adapted image embedding and the projected EHR
        embeddings.
    hidden_dim : int, default=256
        Hidden width of the image adapter and of the EHR projection (each
        ``Linear -> ReLU -> Linear``).
    lstm_dim : int, default=256
        Hidden width of the two-layer EHR LSTM (MedFuse's :math:`m = 256`)."""
DOCS["paired_training"] = """lr : float, default=1e-3
        Adam learning rate.
    weight_decay : float, default=1e-4
        Adam's weight decay (not applied to a learned temperature).
    batch_size : int, default=256
        Largest mini-batch; batches are dealt evenly so that none has a single row. The
        contrastive losses take their negatives from the batch.
    max_epochs : int, default=100
        Passes over the paired rows.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and batch order.
    verbose : int, default=0
        Print the training loss each epoch when positive.
    modality_dims : None, list of int or dict of str to int, default=None
        How to split a plain array into modalities: ``None`` halves it (EHR first, then
        the image), a list gives consecutive widths, a dict names them (then pass ``image``
        and ``ehr``)."""
DOCS["paired_attributes"] = """image_spec_, ehr_spec_ : ModalitySpec
        The two modalities found in ``fit`` (name, kind, columns, width).
    n_paired_ : int
        Rows used by ``fit``: those with both modalities.
    net_ : skorch.NeuralNet
        The trained network (:class:`~skfusion.modules.ssl.PairedEncoders`);
        ``net_.history`` holds the loss of each epoch (``valid_loss``: that of the held-out
        rows).
    n_iter_ : int
        Epochs trained: ``max_epochs``, fewer when early stopping ended training.
    best_epoch_ : int
        The epoch whose weights the model has: with rows held out, the one of lowest
        held-out loss (0: the initial weights); otherwise the last, ``n_iter_``.
    n_features_in_ : int
        Number of columns ``transform`` reads (for a frame: the output modalities' columns;
        for an array: every column).
    feature_names_in_ : ndarray of str
        Those columns' names (frame input only)."""
DOCS["paired_early_stopping"] = """early_stopping : bool or "auto", default="auto"
        How the number of epochs is chosen. ``True``: hold out ``validation_fraction`` of
        the paired rows, record their loss before training and after each epoch (the mean
        over batches of at most ``batch_size`` rows, the same batches every epoch), stop when
        it has not improved for ``n_iter_no_change`` epochs and restore the best epoch (0:
        the initial weights); ``fit`` warns (:class:`~sklearn.exceptions.ConvergenceWarning`)
        when ``max_epochs`` ends training while that loss was still improving. ``"auto"``
        does so when that share would hold at least 100 rows and at least ``batch_size``
        (from 2,560 paired rows at the defaults); with fewer, where a held-out batch would be
        smaller than a training one (a contrastive loss depends on the batch's size), it
        trains as ``False`` does. ``False``: train ``max_epochs`` epochs on every paired row
        and keep the last (no warning).
    validation_fraction : float, default=0.1
        Share of the paired rows held out when ``early_stopping`` holds rows out.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs without a better held-out loss
        (scikit-learn's ``MLPClassifier`` default)."""
