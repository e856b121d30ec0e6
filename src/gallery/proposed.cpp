// Unassigned faces and the people proposed from them: the store's side of `gallery assign`,
// `recluster`, `merge` and `split` (the decisions are assign.cpp's).
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "facemag/eval/knn_cluster.hpp"
#include "store.hpp"

namespace facemag::gallery {
namespace {

constexpr const char* kUnnamed = "unnamed-";

void require_grouping(const Grouping& grouping) {
  if (grouping.min_faces < 1)
    throw InvalidInput("a proposed person needs at least 1 face, not " +
                       std::to_string(grouping.min_faces));
  if (!(grouping.threshold >= -1 && grouping.threshold <= 1))
    throw InvalidInput("the clustering threshold is a cosine in [-1, 1], not " +
                       std::to_string(grouping.threshold));
}

// Faces as unit rows (rows x dim) for the clustering, with their raw embeddings for templates.
struct Rows {
  std::size_t dim = 0;
  std::vector<float> unit;
  std::vector<std::vector<float>> raw;
  std::vector<double> quality;  // each face's stored quality

  void add(std::vector<float> embedding, double face_quality) {
    const double n = norm(embedding);
    for (const float x : embedding) unit.push_back(n > 0 ? float(x / n) : 0.0f);
    raw.push_back(std::move(embedding));
    quality.push_back(face_quality);
  }
  std::size_t size() const { return raw.size(); }
  torch::Tensor tensor() {
    return torch::from_blob(unit.data(),
                            {static_cast<std::int64_t>(size()), static_cast<std::int64_t>(dim)},
                            torch::kFloat32);
  }
  const float* row(std::size_t r) const { return unit.data() + r * dim; }
};

// The groups of `rows` (indices into it) by average linkage at `threshold`, each in row order.
std::vector<std::vector<std::size_t>> group_rows(Rows& rows, const std::vector<std::size_t>& which,
                                                 double threshold) {
  if (which.empty()) return {};
  if (which.size() == 1) return {which};
  std::vector<std::int64_t> index(which.begin(), which.end());
  const auto chosen = rows.tensor().index_select(0, torch::tensor(index, torch::kLong));
  const auto grouped = group_faces(chosen, threshold, ClusterOptions{});
  std::vector<std::vector<std::size_t>> groups(static_cast<std::size_t>(grouped.clustering.groups));
  for (std::size_t i = 0; i < which.size(); ++i)
    groups[static_cast<std::size_t>(grouped.clustering.group[i])].push_back(which[i]);
  return groups;
}

// Cosine of each row of `members` to their template (person_template of their raw embeddings
// and qualities).
std::vector<double> similarity_to_template(const Rows& rows,
                                           const std::vector<std::size_t>& members) {
  std::vector<std::vector<float>> raw;
  std::vector<double> qualities;
  for (const auto r : members) {
    raw.push_back(rows.raw[r]);
    qualities.push_back(rows.quality[r]);
  }
  const auto t = person_template(raw, qualities);
  const double tn = norm(t);
  std::vector<double> out;
  for (const auto r : members) {
    double dot = 0;
    for (std::size_t d = 0; d < rows.dim; ++d) dot += double(rows.row(r)[d]) * t[d];
    out.push_back(tn > 0 ? dot / tn : 0.0);
  }
  return out;
}

}  // namespace

std::pair<std::int64_t, std::string> Gallery::State::new_proposed_person() {
  auto number = std::stoll(meta("next_unnamed"));
  while (person_id(kUnnamed + std::to_string(number))) ++number;
  const auto name = kUnnamed + std::to_string(number);
  const auto id =
      as_int(sql->run("INSERT INTO persons (name) VALUES (?) RETURNING id", {name}).at(0)[0]);
  sql->run("INSERT INTO proposed (person_id, number, proposed_at) VALUES (?, ?, ?)",
           {id, static_cast<std::int64_t>(number), utc_now()});
  sql->run("UPDATE meta SET value = ? WHERE key = 'next_unnamed'", {std::to_string(number + 1)});
  return {id, name};
}

std::int64_t Gallery::State::move_to_person(std::int64_t unassigned_id, std::int64_t person) {
  auto rows =
      sql->run(std::string("SELECT ") + kFaceColumns + ", added_at FROM unassigned WHERE id = ?",
               {unassigned_id});
  if (rows.empty())
    throw GalleryError(location + ": no unassigned face " + std::to_string(unassigned_id));
  auto& row = rows[0];
  const auto added_at = as_text(row.back());
  row.pop_back();
  const auto id = insert_face(person, FaceColumns{row}, added_at);
  if (!id)
    throw GalleryError(location + ": unassigned face " + std::to_string(unassigned_id) +
                       " is stored on a person already (run `gallery check`)");
  sql->run("DELETE FROM unassigned WHERE id = ?", {unassigned_id});
  return *id;
}

std::int64_t Gallery::State::move_to_pool(std::int64_t face_id, bool too_poor) {
  auto rows = sql->run(
      std::string("SELECT ") + kFaceColumns + ", enrolled_at FROM faces WHERE id = ?", {face_id});
  if (rows.empty()) throw GalleryError(location + ": no face " + std::to_string(face_id));
  auto values = rows[0];
  const auto added_at = values.back();
  values.pop_back();
  values.emplace_back(static_cast<std::int64_t>(too_poor ? 1 : 0));
  values.push_back(added_at);
  const auto id = as_int(sql->run(std::string("INSERT INTO unassigned (") + kFaceColumns +
                                      ", too_poor, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                                      "?) RETURNING id",
                                  values)
                             .at(0)[0]);
  sql->run("DELETE FROM faces WHERE id = ?", {face_id});
  return id;
}

std::vector<ProposedPerson> Gallery::State::propose_from(const std::vector<std::int64_t>& fresh,
                                                         const Grouping& grouping) {
  if (fresh.empty()) return {};
  // Every unassigned face that may seed a person.
  Rows rows;
  rows.dim = static_cast<std::size_t>(model.embedding_size);
  std::vector<std::int64_t> ids;
  for (const auto& row :
       sql->run("SELECT id, embedding, quality FROM unassigned WHERE too_poor = 0 ORDER BY id")) {
    ids.push_back(as_int(row[0]));
    rows.add(blob_to_floats(as_blob(row[1])), as_real(row[2]));
  }
  const std::set<std::int64_t> is_fresh(fresh.begin(), fresh.end());
  std::vector<std::int64_t> fresh_rows;
  for (std::size_t r = 0; r < ids.size(); ++r) {
    if (is_fresh.count(ids[r])) fresh_rows.push_back(static_cast<std::int64_t>(r));
  }
  if (fresh_rows.empty()) return {};
  // The new faces and the unassigned faces as near to one of them as a group may be.
  const auto all = rows.tensor();
  const auto near = std::get<0>(
      torch::mm(all, all.index_select(0, torch::tensor(fresh_rows, torch::kLong)).t()).max(1));
  const auto* best = near.data_ptr<float>();
  std::vector<std::size_t> candidates;
  for (std::size_t r = 0; r < ids.size(); ++r) {
    if (is_fresh.count(ids[r]) || best[r] >= grouping.threshold) candidates.push_back(r);
  }
  auto groups = group_rows(rows, candidates, grouping.threshold);
  // Groups that are big enough and hold a new face, numbered by their oldest face.
  std::erase_if(groups, [&](const std::vector<std::size_t>& g) {
    return static_cast<int>(g.size()) < grouping.min_faces ||
           std::none_of(g.begin(), g.end(), [&](std::size_t r) { return is_fresh.count(ids[r]); });
  });
  std::sort(groups.begin(), groups.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  std::vector<ProposedPerson> out;
  for (const auto& members : groups) {
    const auto [person, name] = new_proposed_person();
    const auto similarity = similarity_to_template(rows, members);
    ProposedPerson proposed{name, {}};
    for (std::size_t i = 0; i < members.size(); ++i) {
      const auto id = ids[members[i]];
      proposed.faces.push_back({id, move_to_person(id, person), similarity[i]});
    }
    update_template(person);
    out.push_back(std::move(proposed));
  }
  return out;
}

AssignStored Gallery::store_assigned(const std::vector<DecidedFace>& faces,
                                     const Grouping& grouping) {
  require_grouping(grouping);
  const auto dim = static_cast<std::size_t>(state_->model.embedding_size);
  for (const auto& d : faces) {
    if (d.face.embedding.size() != dim)
      throw InvalidInput(d.face.source_path + ": an embedding of " +
                         std::to_string(d.face.embedding.size()) + " values for a gallery of " +
                         std::to_string(dim) + "-d " + state_->model.model_name + " embeddings");
  }
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  return s.transaction([&] {
    AssignStored out;
    out.placements.resize(faces.size());
    std::set<std::int64_t> touched;
    std::vector<std::int64_t> fresh;
    std::map<std::int64_t, std::size_t> placement_of;  // unassigned id -> placement
    const auto now = utc_now();
    for (std::size_t i = 0; i < faces.size(); ++i) {
      const auto& f = faces[i].face;
      auto& placed = out.placements[i];
      const auto key = face_key(f.detection.box);
      const auto on_person = s.sql->run(
          "SELECT f.id, p.name, p.id FROM faces f JOIN persons p ON p.id = f.person_id WHERE "
          "f.image_sha256 = ? AND f.face_key = ?",
          {f.image_sha256, key});
      if (!on_person.empty()) {  // stored on a person before: it stays there
        placed.id = as_int(on_person[0][0]);
        placed.person = as_text(on_person[0][1]);
        placed.proposed = s.is_proposed(as_int(on_person[0][2]));
        placed.already = true;
        continue;
      }
      const auto pooled =
          s.sql->run("SELECT id, too_poor FROM unassigned WHERE image_sha256 = ? AND face_key = ?",
                     {f.image_sha256, key});
      const auto person = f.person.empty() ? std::nullopt : s.person_id(f.person);
      if (person) {
        if (s.sql->dialect() == Dialect::kPostgres)  // one writer per person's template at a time
          s.sql->run("SELECT id FROM persons WHERE id = ? FOR UPDATE", {*person});
        std::optional<std::int64_t> id;
        if (!pooled.empty()) {
          id = s.move_to_person(as_int(pooled[0][0]), *person);
          placed.already = true;
        } else {
          id = s.insert_face(*person, FaceColumns::of(f), now);
        }
        placed.id = *id;
        placed.person = f.person;
        placed.proposed = s.is_proposed(*person);
        touched.insert(*person);
        continue;
      }
      if (!pooled.empty()) {
        placed.id = as_int(pooled[0][0]);
        placed.too_poor = as_int(pooled[0][1]) != 0;
        placed.already = true;
        placement_of[placed.id] = i;
        continue;
      }
      auto values = FaceColumns::of(f).values;
      values.emplace_back(static_cast<std::int64_t>(faces[i].too_poor ? 1 : 0));
      values.emplace_back(now);
      placed.id = as_int(s.sql
                             ->run(std::string("INSERT INTO unassigned (") + kFaceColumns +
                                       ", too_poor, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                                       "?, ?) RETURNING id",
                                   values)
                             .at(0)[0]);
      placed.too_poor = faces[i].too_poor;
      placement_of[placed.id] = i;
      if (!placed.too_poor) fresh.push_back(placed.id);
    }
    for (const auto person : touched) s.update_template(person);
    out.proposed = s.propose_from(fresh, grouping);
    for (const auto& person : out.proposed) {
      for (const auto& face : person.faces) {
        const auto at = placement_of.find(face.unassigned_id);
        if (at == placement_of.end()) continue;  // an older unassigned face
        auto& placed = out.placements[at->second];
        placed.person = person.name;
        placed.proposed = true;
        placed.grouped = true;
        placed.id = face.face_id;
        placed.similarity = face.similarity;
      }
    }
    return out;
  });
}

std::vector<UnassignedFace> Gallery::unassigned() const {
  std::lock_guard lock(state_->mutex);
  std::vector<UnassignedFace> out;
  for (const auto& row : state_->sql->run(
           "SELECT id, source_path, image_sha256, box, landmarks, score, quality, embedding, "
           "too_poor, added_at FROM unassigned ORDER BY id")) {
    UnassignedFace f;
    f.id = as_int(row[0]);
    f.source_path = as_text(row[1]);
    f.image_sha256 = as_text(row[2]);
    f.detection = detection_of(as_blob(row[3]), as_blob(row[4]), as_real(row[5]));
    f.quality = static_cast<float>(as_real(row[6]));
    f.embedding = blob_to_floats(as_blob(row[7]));
    f.too_poor = as_int(row[8]) != 0;
    f.added_at = as_text(row[9]);
    out.push_back(std::move(f));
  }
  return out;
}

std::size_t Gallery::unassigned_count() const {
  std::lock_guard lock(state_->mutex);
  return static_cast<std::size_t>(
      as_int(state_->sql->run("SELECT COUNT(*) FROM unassigned").at(0)[0]));
}

Regrouped Gallery::recluster(const Grouping& grouping, double quality_gate) {
  require_grouping(grouping);
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  return s.transaction([&] {
    // Every face of no named person: unassigned (person 0) or on a proposed person.
    struct Face {
      std::int64_t id = 0;
      std::int64_t person = 0;
      bool too_poor = false;
    };
    std::vector<Face> faces;
    Rows rows;
    rows.dim = static_cast<std::size_t>(s.model.embedding_size);
    const auto passes = [&](double q) { return quality_gate <= 0 || q >= quality_gate; };
    for (const auto& row :
         s.sql->run("SELECT id, embedding, quality FROM unassigned ORDER BY id")) {
      faces.push_back({as_int(row[0]), 0, !passes(as_real(row[2]))});
      rows.add(blob_to_floats(as_blob(row[1])), as_real(row[2]));
    }
    for (const auto& row : s.sql->run(
             "SELECT f.id, f.person_id, f.embedding, f.quality FROM faces f JOIN proposed r ON "
             "r.person_id = f.person_id ORDER BY f.id")) {
      faces.push_back({as_int(row[0]), as_int(row[1]), !passes(as_real(row[3]))});
      rows.add(blob_to_floats(as_blob(row[2])), as_real(row[3]));
    }
    std::map<std::int64_t, std::pair<std::int64_t, std::string>> old;  // person -> number, name
    for (const auto& row :
         s.sql->run("SELECT r.person_id, r.number, p.name FROM proposed r JOIN persons p ON p.id = "
                    "r.person_id"))
      old[as_int(row[0])] = {as_int(row[1]), as_text(row[2])};

    std::set<std::int64_t> touched;
    std::vector<std::size_t> eligible;
    for (std::size_t r = 0; r < faces.size(); ++r) {
      if (!faces[r].too_poor) {
        eligible.push_back(r);
      } else if (faces[r].person != 0) {
        touched.insert(faces[r].person);
        faces[r] = {s.move_to_pool(faces[r].id, true), 0, true};
      }
    }
    // The gate of this regrouping decides who is too poor (it may differ from the assigning's).
    s.sql->run("UPDATE unassigned SET too_poor = 0");
    for (const auto& f : faces) {
      if (f.too_poor) s.sql->run("UPDATE unassigned SET too_poor = 1 WHERE id = ?", {f.id});
    }
    auto groups = group_rows(rows, eligible, grouping.threshold);
    std::vector<std::vector<std::size_t>> big;
    for (auto& g : groups) {
      if (static_cast<int>(g.size()) >= grouping.min_faces) {
        big.push_back(std::move(g));
      } else {
        for (const auto r : g) {
          if (faces[r].person == 0) continue;
          touched.insert(faces[r].person);
          faces[r] = {s.move_to_pool(faces[r].id, false), 0, false};
        }
      }
    }
    std::sort(big.begin(), big.end(),
              [](const auto& a, const auto& b) { return a.front() < b.front(); });
    // Each old name to the group holding most of its faces (ties: the older name, then the
    // earlier group), each group at most one name.
    std::vector<std::tuple<std::size_t, std::int64_t, std::size_t, std::int64_t>> overlaps;
    for (std::size_t g = 0; g < big.size(); ++g) {
      std::map<std::int64_t, std::size_t> count;
      for (const auto r : big[g]) {
        if (faces[r].person != 0) ++count[faces[r].person];
      }
      for (const auto& [person, n] : count) overlaps.emplace_back(n, old[person].first, g, person);
    }
    std::sort(overlaps.begin(), overlaps.end(), [](const auto& a, const auto& b) {
      if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
      if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
      return std::get<2>(a) < std::get<2>(b);
    });
    std::vector<std::int64_t> target(big.size(), 0);
    std::set<std::int64_t> named;
    Regrouped out;
    for (const auto& [n, number, g, person] : overlaps) {
      if (target[g] != 0 || named.count(person)) continue;
      target[g] = person;
      named.insert(person);
      out.kept.push_back(old[person].second);
    }
    for (const auto& [person, numbered] : old) {
      if (!named.count(person)) out.dissolved.push_back(numbered.second);
    }
    for (std::size_t g = 0; g < big.size(); ++g) {
      std::string name;
      if (target[g] == 0) {
        std::tie(target[g], name) = s.new_proposed_person();
      } else {
        name = old[target[g]].second;
      }
      const auto similarity = similarity_to_template(rows, big[g]);
      ProposedPerson person{name, {}};
      for (std::size_t i = 0; i < big[g].size(); ++i) {
        auto& f = faces[big[g][i]];
        ProposedPerson::Face placed{0, f.id, similarity[i]};
        if (f.person == 0) {
          placed.unassigned_id = f.id;
          placed.face_id = s.move_to_person(f.id, target[g]);
        } else if (f.person != target[g]) {
          s.sql->run("UPDATE faces SET person_id = ? WHERE id = ?", {target[g], f.id});
          touched.insert(f.person);
        }
        person.faces.push_back(placed);
      }
      touched.insert(target[g]);
      out.people.push_back(std::move(person));
    }
    for (const auto person : touched) s.update_template(person);  // the emptied ones go
    out.unassigned =
        static_cast<std::size_t>(as_int(s.sql->run("SELECT COUNT(*) FROM unassigned")[0][0]));
    return out;
  });
}

void Gallery::merge_persons(const std::string& into, const std::string& from) {
  if (into == from) throw InvalidInput("merge: '" + into + "' would be merged into itself");
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  s.transaction([&] {
    const auto a = s.require_person(into);
    const auto b = s.require_person(from);
    s.sql->run("UPDATE faces SET person_id = ? WHERE person_id = ?", {a, b});
    s.sql->run("DELETE FROM templates WHERE person_id = ?", {b});
    s.sql->run("DELETE FROM persons WHERE id = ?", {b});
    s.update_template(a);
  });
}

std::string Gallery::split_person(const std::string& person,
                                  const std::vector<std::int64_t>& face_ids) {
  if (face_ids.empty()) throw InvalidInput("split " + person + ": name the faces to split off");
  const std::set<std::int64_t> unique(face_ids.begin(), face_ids.end());
  if (unique.size() != face_ids.size())
    throw InvalidInput("split " + person + ": a face is named twice");
  std::lock_guard lock(state_->mutex);
  auto& s = *state_;
  return s.transaction([&] {
    const auto id = s.require_person(person);
    for (const auto face : face_ids) {
      const auto rows = s.sql->run(
          "SELECT p.id, p.name FROM faces f JOIN persons p ON p.id = f.person_id WHERE f.id = ?",
          {face});
      if (rows.empty())
        throw GalleryError(s.location + ": no face " + std::to_string(face) + " in the gallery");
      if (as_int(rows[0][0]) != id)
        throw GalleryError(s.location + ": face " + std::to_string(face) + " is " +
                           as_text(rows[0][1]) + "'s, not " + person + "'s");
    }
    const auto held =
        as_int(s.sql->run("SELECT COUNT(*) FROM faces WHERE person_id = ?", {id})[0][0]);
    if (held == static_cast<std::int64_t>(face_ids.size()))
      throw InvalidInput("split " + person + ": these are all " + std::to_string(held) +
                         " of its faces (rename it instead)");
    const auto [fresh, name] = s.new_proposed_person();
    for (const auto face : face_ids)
      s.sql->run("UPDATE faces SET person_id = ? WHERE id = ?", {fresh, face});
    s.update_template(id);
    s.update_template(fresh);
    return name;
  });
}

}  // namespace facemag::gallery
