// IJB-B/C template evaluation as MagFace's eval_ijb.py computes it (1:1 verification of templates),
// the 1:N identification protocol of insightface's IJB-C lists, and sklearn's ROC curve that both
// report from.
//
// A template is a set of face images of one person, grouped into media (a photo, or the frames of
// one video). Its feature: the raw image features averaged per media, each media mean
// L2-normalised (or, quality-weighted as MagFace's magface_qlt=1, left as is so that a media
// counts with its magnitude), then averaged over the media. All arithmetic is in double.
#pragma once

#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace facemag {
class Embedder;
}

namespace facemag::eval {

// meta/ijb{b,c}_face_tid_mid.txt: "image_name template_id media_id" per line; line i describes
// feature row i (upstream pairs them by position).
struct IjbFaceList {
  std::filesystem::path source;
  std::vector<std::string> image;
  std::vector<std::int64_t> template_id, media_id;
  std::size_t size() const { return image.size(); }
};
// InvalidInput naming the file and line for a line that is not a name and two integers, and for a
// file that is missing or empty.
IjbFaceList read_ijb_face_list(const std::filesystem::path& path);

struct TemplateFeatures {
  std::vector<std::int64_t> ids;  // ascending (np.unique)
  torch::Tensor features;         // ids.size() x D, float64
  // Row of a template id; nullopt for an id without images.
  std::optional<std::size_t> row(std::int64_t id) const;
};

// Template features from image features (N x D, row i = face list line i). quality_weighted keeps
// media means unnormalised (magface_qlt=1). InvalidInput when the row counts differ.
TemplateFeatures ijb_template_features(const torch::Tensor& image_features,
                                       const IjbFaceList& faces, bool quality_weighted);

// eval_ijb.py's scores, 1 - arccos(clamp(cos, -1, 1)) / pi of the two template features, of the
// pairs of meta/ijb{b,c}_template_pair_label.txt ("t1 t2 label" per line), read and scored a block
// at a time (on every core) so that IJB-C's 15.6 million pairs need only the scores and labels in
// memory. InvalidInput naming the file and line for a malformed line, a label other than 0/1 and
// a template id that has no image.
struct IjbPairScores {
  std::vector<float> score;  // float32, as upstream computes them
  std::vector<bool> genuine;
};
IjbPairScores ijb_pair_scores(const std::filesystem::path& pair_file,
                              const TemplateFeatures& templates);

// sklearn.metrics.roc_curve(labels, scores) with drop_intermediate=True: thresholds are the
// distinct scores in descending order (the first one is max + 1), points whose second
// differences of false and true positives are both zero are dropped, (0, 0) is prepended.
struct RocCurve {
  std::vector<double> fpr, tpr, threshold;
  std::size_t genuine = 0, impostor = 0;
  double auc = 0;  // trapezoids over the points (sklearn.metrics.auc)
};
RocCurve sklearn_roc(std::span<const float> scores, const std::vector<bool>& genuine);

// eval_ijb.py's TAR at a FAR: the ROC point with the smallest |fpr - far|, ties going to the last
// such point in the curve's order.
struct TarAtFar {
  double far_target = 0;
  double far = 0, tar = 0, threshold = 0;
  std::size_t point = 0;  // index into the curve
};
TarAtFar tar_at_far(const RocCurve& roc, double far);
// FAR 1e-6, 1e-5, ..., 1e-1: the columns upstream prints.
std::vector<double> ijb_far_targets();

// ---- 1:N identification (insightface's ijbc_1N_gallery_G1/G2.csv, ijbc_1N_probe_mixed.csv) ----

// A CSV with a header line and TEMPLATE_ID, SUBJECT_ID as its first two columns (one line per
// image; a template's lines repeat its subject): each template once, with its subject, in order
// of first appearance. InvalidInput naming file and line for a template given two subjects.
struct TemplateSubjects {
  std::vector<std::int64_t> template_id, subject_id;
};
TemplateSubjects read_ijb_template_subjects(const std::filesystem::path& path);

struct IdentificationResult {
  std::size_t probes = 0, mated = 0, non_mated = 0;
  std::vector<int> ranks;   // CMC at these ranks
  std::vector<double> cmc;  // share of mated probes whose subject is within the first rank subjects
  struct OpenSet {
    double fpir = 0;
    std::optional<double> threshold;  // nullopt: too few non-mated probes to measure this FPIR
    double tpir = 0;
  };
  std::vector<OpenSet> open_set;
};

// One probe's outcome in a 1:N search: whether its person is enrolled (mated), the rank of that
// person among the candidates (0: not among them), and the top candidate's score and correctness.
struct ProbeOutcome {
  bool mated = false;
  int rank = 0;
  double top_score = 0;
};
// CMC at `ranks` over the mated probes; for each FPIR the threshold returning at most
// floor(fpir x non-mated) non-mated probes ((k+1)-th highest non-mated top score) and the TPIR,
// the share of mated probes found at rank 1 above it (nullopt threshold: too few non-mated).
IdentificationResult identification_metrics(const std::vector<ProbeOutcome>& probes,
                                            const std::vector<int>& ranks,
                                            const std::vector<double>& fpirs);

// Closed- and open-set identification of probe templates against gallery templates by cosine
// similarity of template features; a subject's score is its best gallery template. Mated probes
// (subject in the gallery) give the CMC: the rank of their subject among all gallery subjects. The
// open-set threshold for an FPIR is the (k+1)-th highest top-1 score of the non-mated probes with
// k = floor(fpir x non-mated), so that at most k of them are returned; TPIR is the share of mated
// probes whose top-1 subject is theirs and scores above it.
IdentificationResult identify_templates(const TemplateFeatures& templates,
                                        const TemplateSubjects& gallery,
                                        const TemplateSubjects& probes,
                                        const std::vector<int>& ranks = {1, 5, 10},
                                        const std::vector<double>& fpirs = {1e-2, 1e-1});

// ---- the runs of `facemag eval ijb` and `facemag eval ijb-identify` ----

// The protocol files of IJB-B or IJB-C in a meta folder, found as find_ijb_meta_file finds them
// (DIR/meta/NAME, else DIR/NAME; InvalidInput naming both places when neither exists).
struct IjbMeta {
  std::filesystem::path dir;
  std::string type = "c";  // "b" (IJB-B) or "c" (IJB-C)

  // ijb<type>_<name>.
  std::filesystem::path file(const std::string& name) const;
  std::filesystem::path face_list() const { return file("face_tid_mid.txt"); }
  std::filesystem::path template_pairs() const { return file("template_pair_label.txt"); }
  // insightface's two 1:N gallery lists (IJB-C: G1, G2; IJB-B: S1, S2) and the mixed probes.
  std::vector<std::filesystem::path> gallery_lists() const;
  std::filesystem::path probe_list() const { return file("1N_probe_mixed.csv"); }
};

// The aligned faces a face list names, read from `folder` and embedded `batch` at a time: row i for
// line i (N x D float32, raw embeddings). `progress` gets the faces of each batch done.
// InvalidInput naming the image and its face-list line for an image that is not of the model's
// input size.
torch::Tensor embed_ijb_faces(const IjbFaceList& faces, const std::filesystem::path& folder,
                              const Embedder& embedder, int batch,
                              const std::function<void(std::size_t faces_done)>& progress = {});

// FAR as IJB tables label their columns ("1e-06").
std::string far_label(double far);

// 1:1 template verification of one IJB set as MagFace's eval_ijb.py reports it.
struct IjbVerification {
  std::string type;
  bool quality_weighted = false;
  std::size_t images = 0, templates = 0, pairs = 0;
  RocCurve roc;
  std::vector<TarAtFar> tar_at_far;  // at ijb_far_targets()
};
// Reads the face list, finds the template pair list, takes the image features of the faces from
// `image_features` (row i = face list line i; freed once the template features are made), scores
// every template pair and computes the ROC. Each step's seconds and the peak memory so far go to
// the debug log (IJB-C's 15.6 million pairs take minutes and gigabytes).
IjbVerification verify_ijb_templates(
    const IjbMeta& meta, const std::function<torch::Tensor(const IjbFaceList&)>& image_features,
    bool quality_weighted);

// The ROC curve (FAR from 1e-6, log10 scale), titled after the set and its weighting.
cv::Mat ijb_roc_chart(const IjbVerification& verification);

// 1:N identification of the probes against one gallery list.
struct IjbIdentification {
  std::filesystem::path gallery;
  std::size_t gallery_templates = 0;
  bool quality_weighted = false;
  IdentificationResult result;  // CMC at ranks 1, 5, 10; TPIR at FPIR 1e-2 and 1e-1
};
// The gallery list read and searched with media-normalised template features, then with
// quality-weighted ones (in that order).
std::vector<IjbIdentification> identify_ijb_gallery(const torch::Tensor& image_features,
                                                    const IjbFaceList& faces,
                                                    const std::filesystem::path& gallery_list,
                                                    const TemplateSubjects& probes);

}  // namespace facemag::eval
