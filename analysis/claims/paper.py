"""The papers' sentences a study is checked against, each quoted, and MICCAI 2023 Table 1's 27 numbers.

Each :class:`~analysis.claims.model.Claim` carries one sentence (or one reading of it) and a kind of check from
:data:`analysis.claims.checks.KINDS`. To check a sentence of your own, add a ``Claim`` that reuses a kind, e.g.
that V-Net and its no-skip version agree above alpha 0.5::

    Claim(name="vnet_parity", paper="my notes", source="-", quote="V-Net matches its no-skip version",
          kind="parity_above", variants=("vnet",), baseline="noskip_vnet", boundary=0.5),
"""

from __future__ import annotations

from analysis.claims.model import JOURNAL, MICCAI, UDTRANSNET, Claim

PARITY = (
    "It is worth noting that for α values > 0.3, there is negligible difference between the dice score "
    "performances of all the U-Net variants"
)
NOISY = "What is interesting is also how the standard U-Net performance is noisy compared to NoSkipU-Net"
NAMED_CELLS = (
    "For α values 0.3 and 0.4 in training and 0.9 on testing (corresponding to an out-of-domain testing scenario), "
    "the NoSkipU-Net performs better than the AGU-Net"
)
HARM = "there indeed are situations where skip-connections cause more harm than benefit"
HARDER_SPLEEN = (
    "For the spleen data set, both the AGU-Net and the standard U-Net demonstrate severe drop in performance in the "
    "harder case"
)
HARDER_COUNTS = (
    "In the harder TD categories, models from the No-Skip group performed the best in 5/8 cases (based on DSC) and "
    "7/8 (based on Hausdorff distances)"
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        name="parity_above_0.3",
        paper=MICCAI,
        source="Sec. 3.1, Fig. 4 left",
        quote=PARITY,
        kind="parity_above",
        variants=("unet", "attention_unet"),
    ),
    Claim(
        name="attention_gain_below_0.3",
        paper=MICCAI,
        source="Sec. 3.1, Fig. 4 left",
        quote="Below α values of 0.3, the benefits of using attention gating in the skip-connections start to appear",
        kind="gain_below",
        variants=("attention_unet",),
    ),
    Claim(
        name="attention_gain_exceeds_unet",
        paper=MICCAI,
        source="Abstract; Fig. 4 left",
        quote="We report that such incremental benefit is non-linear, with the Attention-Gated U-Net yielding larger "
        "improvements",
        kind="gain_exceeds",
        variants=("attention_unet", "unet"),
    ),
    Claim(
        name="unet_noisier_seeds",
        paper=MICCAI,
        source="Sec. 3.1 (reading: spread over seeds)",
        quote=NOISY,
        kind="noisier_across_seeds",
        variants=("unet",),
    ),
    Claim(
        name="unet_noisier_curve",
        paper=MICCAI,
        source="Sec. 3.1, Fig. 4 left (reading: a jagged curve over alpha)",
        quote=NOISY,
        kind="noisier_curve",
        variants=("unet",),
    ),
    Claim(
        name="ood_named_cells",
        paper=MICCAI,
        source="Sec. 3.1, Fig. 4 right",
        quote=NAMED_CELLS,
        kind="named_cells",
        variants=("attention_unet",),
        cells=((0.3, 0.9), (0.4, 0.9)),
    ),
    Claim(
        name="ood_harm_exists",
        paper=MICCAI,
        source="Sec. 3.1, Fig. 4 right (U-Net: 'comparisons ... show similar trends')",
        quote=HARM,
        kind="harm_exists",
        variants=("attention_unet",),
    ),
    Claim(
        name="ood_harm_exists_unet",
        paper=MICCAI,
        source="Sec. 3.1, Fig. 4 right (U-Net: 'comparisons ... show similar trends')",
        quote=HARM,
        kind="harm_exists",
        variants=("unet",),
    ),
    Claim(
        name="table1_attention_best_in_domain",
        paper=MICCAI,
        source="Sec. 3.2, Table 1",
        quote="Looking at the “In-domain” rows in Table 1, on all three data sets, the AGU-Net outperforms both the "
        "other variants",
        kind="best_in_domain",
        variants=("attention_unet", "unet", "noskip_unet"),
        datasets=("busi", "spleen", "heart"),
    ),
    Claim(
        name="table1_busi_unet_as_noskip",
        paper=MICCAI,
        source="Sec. 3.2, Table 1",
        quote="On the Ultrasound data set, the NoSkipU-Net performs as well as the standard U-Net",
        kind="performs_as_well",
        variants=("unet",),
        datasets=("busi",),
    ),
    Claim(
        name="table1_busi_unet_drops_more",
        paper=MICCAI,
        source="Sec. 3.2, Table 1",
        quote="The drop in performance is most pronounced for the U-Net, but moderate for the NoSkipU-Net",
        kind="drops_more",
        variants=("unet",),
        datasets=("busi",),
    ),
    Claim(
        name="table1_spleen_heart_attention_drops",
        paper=MICCAI,
        source="Sec. 3.2, Table 1",
        quote=HARDER_SPLEEN,
        kind="drops_more",
        variants=("attention_unet",),
        datasets=("spleen", "heart"),
    ),
    Claim(
        name="table1_spleen_heart_unet_drops",
        paper=MICCAI,
        source="Sec. 3.2, Table 1 ('The heart data set shows the same trend')",
        quote=HARDER_SPLEEN,
        kind="drops_more",
        variants=("unet",),
        datasets=("spleen", "heart"),
    ),
    Claim(
        name="journal_noskip_best_harder_dsc",
        paper=JOURNAL,
        source="Results",
        quote=HARDER_COUNTS,
        kind="group_best_on_levels",
        levels=("hardest", "harder"),
        paper_count="5/8",
    ),
    Claim(
        name="journal_noskip_best_harder_hd",
        paper=JOURNAL,
        source="Results",
        quote=HARDER_COUNTS,
        kind="group_best_on_levels",
        metric="hd95",
        levels=("hardest", "harder"),
        paper_count="7/8",
    ),
    Claim(
        name="journal_cov_noskip_most_robust",
        paper=JOURNAL,
        quote="When measuring robustness using the coefficient of variation metric on the DSC, the No-Skip group "
        "performed the best in 7 out of 16 cases, showing superior results than the Enhanced (6/16) and Standard "
        "groups (3/16)",
        kind="cov_ranking",
        source="Results (its 16 cases are medical; here every data set and training alpha with test levels is one)",
        paper_count="No-Skip 7/16, Enhanced 6/16, Standard 3/16",
    ),
    Claim(
        name="journal_training_texture_range",
        paper=JOURNAL,
        source="Results",
        quote="training data sets with a narrow texture range negatively impact the robustness of architectures "
        "that include more skip connections. The robustness gap between architectures reduces when trained on a "
        "larger TD range",
        kind="not_expressible",
    ),
    Claim(
        name="skips_contribute_differently",
        paper=UDTRANSNET,
        source="Abstract; Sec. 3, Fig. 4 (every subset of the 4 skips)",
        quote="not all skip connections are useful, each skip connection has different contribution",
        kind="skips_contribute_differently",
        variants=("unet_skips_*",),
    ),
    Claim(
        name="best_subset_differs_by_difficulty",
        paper=UDTRANSNET,
        source="Abstract; Sec. 3, Fig. 4 (reading: across difficulty levels, where the paper compares data sets)",
        quote="the optimal combinations of skip connections are different, relying on the specific datasets",
        kind="best_subset_changes",
        variants=("unet_skips_*",),
    ),
    Claim(
        name="best_subset_differs_by_dataset",
        paper=UDTRANSNET,
        source="Abstract; Sec. 3, Fig. 4 (no skips competitive on GlaS and Synapse, worse on ISIC-2018)",
        quote="the optimal combinations of skip connections are different, relying on the specific datasets",
        kind="best_subset_between_datasets",
        variants=("unet_skips_*",),
    ),
)

TABLE1_VARIANTS = {"AGU-Net": "attention_unet", "U-Net": "unet", "NoSkipU-Net": "noskip_unet"}
TABLE1_DATASETS = {"busi": "Breast (Ultrasound)", "spleen": "Spleen (CT)", "heart": "Heart (MRI)"}
TABLE1: dict[tuple[str, str, str], tuple[float, float]] = {  # (data set, level, variant) -> paper's mean, std
    ("busi", "harder", "attention_unet"): (0.645, 0.291),
    ("busi", "harder", "unet"): (0.723, 0.281),
    ("busi", "harder", "noskip_unet"): (0.735, 0.268),
    ("busi", "in_domain", "attention_unet"): (0.795, 0.206),
    ("busi", "in_domain", "unet"): (0.762, 0.261),
    ("busi", "in_domain", "noskip_unet"): (0.761, 0.258),
    ("busi", "easier", "attention_unet"): (0.799, 0.200),
    ("busi", "easier", "unet"): (0.735, 0.244),
    ("busi", "easier", "noskip_unet"): (0.748, 0.243),
    ("spleen", "harder", "attention_unet"): (0.310, 0.226),
    ("spleen", "harder", "unet"): (0.074, 0.152),
    ("spleen", "harder", "noskip_unet"): (0.558, 0.265),
    ("spleen", "in_domain", "attention_unet"): (0.927, 0.092),
    ("spleen", "in_domain", "unet"): (0.745, 0.275),
    ("spleen", "in_domain", "noskip_unet"): (0.606, 0.265),
    ("spleen", "easier", "attention_unet"): (0.809, 0.201),
    ("spleen", "easier", "unet"): (0.394, 0.354),
    ("spleen", "easier", "noskip_unet"): (0.486, 0.292),
    ("heart", "harder", "attention_unet"): (0.139, 0.242),
    ("heart", "harder", "unet"): (0.500, 0.316),
    ("heart", "harder", "noskip_unet"): (0.815, 0.126),
    ("heart", "in_domain", "attention_unet"): (0.929, 0.055),
    ("heart", "in_domain", "unet"): (0.900, 0.080),
    ("heart", "in_domain", "noskip_unet"): (0.833, 0.111),
    ("heart", "easier", "attention_unet"): (0.889, 0.073),
    ("heart", "easier", "unet"): (0.805, 0.129),
    ("heart", "easier", "noskip_unet"): (0.823, 0.103),
}
