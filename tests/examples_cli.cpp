// End-to-end runs of examples/classify, visualize_attention and finetune on a tiny checkpoint written here, with
// their error cases and the exit statuses of command-line usage errors. tests/CMakeLists.txt passes the programs'
// paths as TESSERA_CLASSIFY_EXE, TESSERA_VISUALIZE_ATTENTION_EXE and TESSERA_FINETUNE_EXE.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "test_helpers.hpp"

#include <tessera/train/classifier_info.hpp>

namespace fs = std::filesystem;
using namespace tessera;

namespace {

using test::read_text;
using test::TempDir;
using test::write_text;

// The tiny model: 8x8 input, 4x4 patches (a 2x2 grid), 2 blocks of 2 heads, 3 classes.
nn::ViTConfig tiny_config() { return test::tiny_vit_config(); }

const std::vector<std::string> kClassNames = {"apple", "boat", "cloud"};
const std::vector<float> kMean = {0.5f, 0.4f, 0.3f}, kStd = {0.2f, 0.25f, 0.3f};

// A checkpoint as train::Trainer writes it, with `names` as the class names (none: no classifier information).
void write_checkpoint(const fs::path& path, const std::vector<std::string>& names) {
  nn::VisionTransformer<float> model(tiny_config(), 7);
  io::CheckpointState state;
  if (!names.empty()) state.trainer["classifier"] = train::ClassifierInfo{names, kMean, kStd}.to_json();
  io::save_checkpoint(path, model, nullptr, state);
}

// An image of `channels` channels with a smooth pattern, so the classes get different logits.
data::Image pattern_image(int64_t height, int64_t width, int64_t channels) {
  data::Image image(height, width, channels);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t c = 0; c < channels; ++c) image.at(y, x, c) = static_cast<uint8_t>((37 * y + 59 * x + 91 * c) % 256);
  return image;
}

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs `program` with `args` (single-quoted; the test's paths hold no quote), capturing stdout and stderr.
Run run(const fs::path& dir, const std::string& program, const std::vector<std::string>& args) {
  std::string command = "'" + program + "'";
  for (const std::string& arg : args) command += " '" + arg + "'";
  command += " >'" + (dir / "stdout.txt").string() + "' 2>'" + (dir / "stderr.txt").string() + "'";
  const int status = std::system(command.c_str());
  Run r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(dir / "stdout.txt");
  r.err = read_text(dir / "stderr.txt");
  return r;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The program must fail with exit code 1 and a message holding every one of `parts`.
void check_fails(const Run& r, const std::string& program, const std::vector<std::string>& parts) {
  CHECK(r.code == 1);
  CHECK_MESSAGE(contains(r.err, program + ": error: "), r.err);
  for (const auto& part : parts) CHECK_MESSAGE(contains(r.err, part), "'" << part << "' not in: " << r.err);
}

// The percentages classify printed under the line naming `image`, by class name.
std::vector<std::pair<std::string, double>> printed_top(const std::string& out, const std::string& image) {
  std::istringstream lines(out);
  std::string line;
  std::vector<std::pair<std::string, double>> top;
  bool in_block = false;
  while (std::getline(lines, line)) {
    if (!line.starts_with("  ")) {
      in_block = line == image;
      continue;
    }
    if (!in_block) continue;
    std::istringstream fields(line);
    double percent = 0.0;
    char sign = 0;
    std::string name;
    fields >> percent >> sign >> name;
    top.emplace_back(name, percent);
  }
  return top;
}

}  // namespace

TEST_CASE("classify prints the top classes of the model's own probabilities and fails clearly") {
  const std::string classify = TESSERA_CLASSIFY_EXE;
  TempDir tmp;
  const fs::path checkpoint = tmp.path / "tiny.safetensors", images = tmp.path / "images";
  write_checkpoint(checkpoint, kClassNames);
  fs::create_directories(images);
  viz::write_png(images / "a.png", pattern_image(8, 8, 3));   // the model's size, RGB
  viz::write_png(images / "b.png", pattern_image(12, 10, 1)); // grey, resized and cropped
  viz::write_png(images / "c.PNG", pattern_image(9, 5, 4));   // RGBA, upper-case extension
  write_text(images / "notes.txt", "not an image");

  SUBCASE("a folder: every image in order, percentages of the model's softmax") {
    const Run r = run(tmp.path, classify, {"--checkpoint", checkpoint.string(), "--image", images.string()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const std::string a = (images / "a.png").string(), b = (images / "b.png").string(),
                      c = (images / "c.PNG").string();
    CHECK(r.out.find(a) < r.out.find(b));
    CHECK(r.out.find(b) < r.out.find(c));
    CHECK_FALSE(contains(r.out, "notes.txt"));
    for (const auto& image : {a, b, c}) {
      const auto top = printed_top(r.out, image);
      REQUIRE(top.size() == 3);  // --top 5 is cut to the 3 classes
      double sum = 0.0;
      for (size_t i = 0; i < top.size(); ++i) {
        sum += top[i].second;
        if (i > 0) CHECK(top[i].second <= top[i - 1].second);
      }
      CHECK(sum == doctest::Approx(100.0).epsilon(1e-3));
    }

    // The same numbers as the library's evaluation path in this process.
    nn::VisionTransformer<float> model(tiny_config());
    io::load_model_weights(checkpoint, model);
    model.eval();
    Generator generator(0);
    const data::FloatImage x =
        train::ClassifierInfo{kClassNames, kMean, kStd}.eval_transform(8)(data::decode_image(images / "a.png"), generator);
    Tensor<float> input(Shape{1, 3, 8, 8});
    std::copy(x.values.begin(), x.values.end(), input.data());
    NoGradGuard no_grad;
    const Tensor<float> probs = ops::softmax(model.forward(input));
    for (const auto& [name, percent] : printed_top(r.out, a)) {
      const size_t k = static_cast<size_t>(std::find(kClassNames.begin(), kClassNames.end(), name) - kClassNames.begin());
      REQUIRE(k < kClassNames.size());
      CHECK(std::abs(percent - 100.0 * probs.data()[k]) <= 0.006);  // printed with 2 decimals
    }
  }

  SUBCASE("one file, --top 1") {
    const Run r = run(tmp.path, classify,
                      {"--checkpoint", checkpoint.string(), "--image", (images / "b.png").string(), "--top", "1"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(printed_top(r.out, (images / "b.png").string()).size() == 1);
  }

  SUBCASE("errors") {
    const fs::path missing = tmp.path / "missing.safetensors";
    check_fails(run(tmp.path, classify, {"--checkpoint", missing.string(), "--image", images.string()}), "classify",
                {missing.string(), "does not exist"});

    const fs::path two_names = tmp.path / "two_names.safetensors";
    write_checkpoint(two_names, {"apple", "boat"});
    check_fails(run(tmp.path, classify, {"--checkpoint", two_names.string(), "--image", images.string()}), "classify",
                {two_names.string(), "names 2 classes", "num_classes 3"});

    const fs::path no_info = tmp.path / "no_info.safetensors";
    write_checkpoint(no_info, {});
    check_fails(run(tmp.path, classify, {"--checkpoint", no_info.string(), "--image", images.string()}), "classify",
                {no_info.string(), "records no class names"});

    const fs::path empty = tmp.path / "empty";
    fs::create_directories(empty);
    write_text(empty / "readme.md", "no images here");
    check_fails(run(tmp.path, classify, {"--checkpoint", checkpoint.string(), "--image", empty.string()}), "classify",
                {empty.string(), "holds no images"});

    const fs::path broken = tmp.path / "broken";
    fs::create_directories(broken);
    viz::write_png(broken / "a.png", pattern_image(8, 8, 3));
    write_text(broken / "z.jpg", "these bytes are no JPEG");
    check_fails(run(tmp.path, classify, {"--checkpoint", checkpoint.string(), "--image", broken.string()}), "classify",
                {(broken / "z.jpg").string(), "cannot decode"});
  }
}

TEST_CASE("visualize_attention writes the head, head-grid, rollout and input PNGs over the resized image") {
  const std::string visualize = TESSERA_VISUALIZE_ATTENTION_EXE;
  TempDir tmp;
  const fs::path checkpoint = tmp.path / "tiny.safetensors", image = tmp.path / "photo.png",
                 out = tmp.path / "out" / "nested";
  write_checkpoint(checkpoint, kClassNames);
  viz::write_png(image, pattern_image(12, 10, 4));  // RGBA of another size than the model's 8x8

  SUBCASE("defaults: the last layer, head 0") {
    const Run r = run(tmp.path, visualize,
                      {"--checkpoint", checkpoint.string(), "--image", image.string(), "--out", out.string(), "--size",
                       "16"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(contains(r.out, "predicted "));
    CHECK(contains(r.out, "the maps show the class token's attention to each patch"));
    // 8x8 resized image enlarged twice to reach 16 pixels, annotated at text scale 1: a 4-pixel margin around the
    // title's lines (10 pixels each) and the picture; the grid has a title line, then "head i" (10 pixels) above
    // each 16-pixel panel, with 4-pixel gaps. Widths depend on the printed texts; each holds at least its pictures.
    const std::vector<std::tuple<std::string, int64_t, int64_t>> expected = {
        {"photo_input.png", 4 + 20 + 16 + 4, 16 + 8}, {"photo_layer1_head0.png", 4 + 30 + 16 + 4, 16 + 8 + 8},
        {"photo_layer1_heads.png", 4 + 10 + 10 + 16 + 4, 2 * (16 + 8) + 3 * 4},
        {"photo_rollout.png", 4 + 30 + 16 + 4, 16 + 8 + 8}};
    for (const auto& [key, height, min_width] : expected) {
      const std::string& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
      CAPTURE(name);
      CHECK(contains(r.out, "wrote " + (out / name).string()));
      REQUIRE(fs::exists(out / name));
      const data::Image png = data::decode_image(out / name);
      CHECK(png.height == height);
      CHECK(png.width >= min_width);
    }
    // The titles and head numbers are drawn in the pictures (the 5x7 font, black on white).
    auto holds_text = [](const data::Image& picture, const std::string& text) {
      data::Image patch(viz::text_height(), viz::text_width(text), 3, 255);
      viz::draw_text(patch, 0, 0, text, viz::Rgb{0, 0, 0});
      for (int64_t y = 0; y + patch.height <= picture.height; ++y)
        for (int64_t x = 0; x + patch.width <= picture.width; ++x) {
          bool same = true;
          for (int64_t r = 0; r < patch.height && same; ++r)
            same = std::equal(patch.data() + r * patch.width * 3, patch.data() + (r + 1) * patch.width * 3,
                              picture.data() + ((y + r) * picture.width + x) * 3);
          if (same) return true;
        }
      return false;
    };
    const data::Image grid = data::decode_image(out / "photo_layer1_heads.png");
    CHECK(holds_text(grid, "head 0"));
    CHECK(holds_text(grid, "head 1"));
    CHECK(holds_text(grid, "layer 1: class token attention, predicted"));
    CHECK(holds_text(data::decode_image(out / "photo_layer1_head0.png"), "layer 1, head 0"));
    CHECK(holds_text(data::decode_image(out / "photo_rollout.png"), "rollout, 2 layers"));
  }

  SUBCASE("--plain: the pictures alone, without title, head numbers or colour bar") {
    const Run r = run(tmp.path, visualize,
                      {"--checkpoint", checkpoint.string(), "--image", image.string(), "--out", out.string(), "--size",
                       "16", "--plain", "--overlay", "uniform", "--alpha", "0.5"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    // The grid is one row of 2 panels with 4-pixel gaps.
    const std::vector<std::tuple<std::string, int64_t, int64_t>> expected = {
        {"photo_input.png", 16, 16}, {"photo_layer1_head0.png", 16, 16}, {"photo_layer1_heads.png", 24, 44},
        {"photo_rollout.png", 16, 16}};
    for (const auto& [key, height, width] : expected) {
      const std::string& name = key;  // clang 14 cannot capture a binding in doctest's message lambda
      CAPTURE(name);
      const data::Image png = data::decode_image(out / name);
      CHECK(png.height == height);
      CHECK(png.width == width);
    }
  }

  SUBCASE("negative layer and head count from the end; --name") {
    const Run r = run(tmp.path, visualize,
                      {"--checkpoint", checkpoint.string(), "--image", image.string(), "--out", out.string(), "--layer",
                       "-2", "--head", "-1", "--name", "pic"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(fs::exists(out / "pic_layer0_head1.png"));
    CHECK(fs::exists(out / "pic_layer0_heads.png"));
    // The default --size 224: text scale 2, so an 8-pixel margin around 3 title lines of 20 pixels and the picture.
    CHECK(data::decode_image(out / "pic_rollout.png").height == 8 + 3 * 20 + 224 + 8);
  }

  SUBCASE("errors") {
    check_fails(run(tmp.path, visualize,
                    {"--checkpoint", checkpoint.string(), "--image", image.string(), "--out", out.string(), "--layer",
                     "2"}),
                "visualize_attention", {"layer 2 is out of range", "2"});
    check_fails(run(tmp.path, visualize,
                    {"--checkpoint", checkpoint.string(), "--image", image.string(), "--out", out.string(), "--head",
                     "-3"}),
                "visualize_attention", {"head -3 is out of range"});
    const fs::path broken = tmp.path / "broken.bmp";
    write_text(broken, "BM but not really");
    check_fails(run(tmp.path, visualize,
                    {"--checkpoint", checkpoint.string(), "--image", broken.string(), "--out", out.string()}),
                "visualize_attention", {broken.string()});
    const fs::path missing = tmp.path / "missing.safetensors";
    check_fails(run(tmp.path, visualize,
                    {"--checkpoint", missing.string(), "--image", image.string(), "--out", out.string()}),
                "visualize_attention", {missing.string(), "does not exist"});
    // A folder: one image file is expected (classify takes folders).
    check_fails(run(tmp.path, visualize,
                    {"--checkpoint", checkpoint.string(), "--image", tmp.path.string(), "--out", out.string()}),
                "visualize_attention", {tmp.path.string(), "is a folder", "takes one image file", "classify"});
  }
}

TEST_CASE("finetune loads a checkpoint into a new head and input size, freezes, trains, and classify reads the result") {
  const std::string finetune = TESSERA_FINETUNE_EXE, classify = TESSERA_CLASSIFY_EXE;
  TempDir tmp;
  const fs::path pretrained = tmp.path / "pretrained.safetensors", data = tmp.path / "data";
  write_checkpoint(pretrained, kClassNames);  // 3 classes, 8x8 input: a 2x2 grid
  // Two classes of 12x12 images (a 3x3 grid at patch 4): the head and pos_embed no longer fit as they are.
  for (const char* split : {"train", "test"})
    for (int c = 0; c < 2; ++c) {
      const fs::path folder = data / split / (c == 0 ? "left" : "right");
      fs::create_directories(folder);
      for (int i = 0; i < 4; ++i) viz::write_png(folder / (std::to_string(i) + ".png"), pattern_image(12 + i, 12, 3));
    }
  const fs::path log = tmp.path / "ft.csv", saved = tmp.path / "ft.safetensors";
  const Run r = run(tmp.path, finetune,
                    {"--pretrained", pretrained.string(), "--data", data.string(), "--img-size", "12", "--freeze", "*",
                     "--unfreeze", "head.*", "--epochs", "2", "--batch", "4", "--threads", "1", "--workers", "0",
                     "--log", log.string(), "--save", saved.string()});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(contains(r.out, "resampled pos_embed from 4 patch positions to the model's 3x3 grid"));
  CHECK(contains(r.out, "kept as initialised (skipped): head.weight head.bias"));
  const int64_t head_params = 8 * 2 + 2;  // embed_dim 8 -> 2 classes
  CHECK(contains(r.out, "parameters: " + std::to_string(head_params) + " trainable of"));
  const std::string csv = read_text(log);
  CHECK(csv.starts_with("epoch,step,train_loss,test_acc,img_per_s,elapsed_s\n1,2,"));
  CHECK(contains(csv, "\n2,4,"));

  // Only the head moved: the frozen body equals the pretrained one.
  nn::VisionTransformer<float> before(tiny_config(), 7);  // what write_checkpoint saved
  nn::ViTConfig tuned = tiny_config();
  tuned.img_size = 12;
  tuned.num_classes = 2;
  nn::VisionTransformer<float> tuned_model(tuned, 0);
  io::load_model_weights(saved, tuned_model);
  const auto same = [](const Tensor<float>& a, const Tensor<float>& b) {
    return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.numel(), b.data());
  };
  CHECK(same(tuned_model.blocks[1].mlp.fc2.weight, before.blocks[1].mlp.fc2.weight));

  // The fine-tuned checkpoint carries the folder's class names and the pretrained Normalize constants.
  const train::ClassifierInfo info = train::read_classifier_info(saved);
  CHECK(info.class_names == std::vector<std::string>{"left", "right"});
  CHECK(info.mean == kMean);
  const Run c = run(tmp.path, classify,
                    {"--checkpoint", saved.string(), "--image", (data / "test" / "left" / "0.png").string()});
  CHECK(c.code == 0);
  CHECK(contains(c.out, "left"));
  CHECK(contains(c.out, "right"));

  // A wrong data folder is named.
  check_fails(run(tmp.path, finetune, {"--pretrained", pretrained.string(), "--data", (tmp.path / "nowhere").string()}),
              "finetune", {"nowhere"});
}

TEST_CASE("every example exits with status 2 on a command-line usage error and 0 for --help") {
  TempDir tmp;
  // Each program with its required flags (their files need not exist: the command line is checked first).
  const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>> programs = {
      {"classify", TESSERA_CLASSIFY_EXE, {"--checkpoint", "c.safetensors", "--image", "i.png"}},
      {"visualize_attention", TESSERA_VISUALIZE_ATTENTION_EXE, {"--checkpoint", "c.safetensors", "--image", "i.png"}},
      {"finetune", TESSERA_FINETUNE_EXE, {"--data", "nowhere"}}};
  for (const auto& [key, path, required] : programs) {
    const std::string& program = key;  // clang 14 cannot capture a binding in doctest's message lambda
    CAPTURE(program);
    const Run help = run(tmp.path, path, {"--help"});
    CHECK(help.code == 0);
    CHECK(contains(help.out, "--help"));
    std::vector<std::string> args = required;
    args.push_back("--no-such-flag");
    const Run unknown = run(tmp.path, path, args);
    CHECK(unknown.code == 2);
    CHECK_MESSAGE(contains(unknown.err, "--no-such-flag"), unknown.err);
    const Run missing = run(tmp.path, path, {});
    CHECK(missing.code == 2);
    CHECK_MESSAGE(contains(missing.err, "is required"), missing.err);
  }

  const Run top =
      run(tmp.path, TESSERA_CLASSIFY_EXE, {"--checkpoint", "c.safetensors", "--image", "i.png", "--top", "0"});
  CHECK(top.code == 2);
  CHECK_MESSAGE(contains(top.err, "--top"), top.err);

  // --seed takes 0 to 2^64 - 1 in decimal: a negative, fractional or too large value is a usage error naming the flag.
  const std::string finetune = TESSERA_FINETUNE_EXE, nowhere = (tmp.path / "nowhere").string();
  for (const std::string seed : {"-1", "1.5", "0x10", "18446744073709551616", ""}) {
    CAPTURE(seed);
    const Run r = run(tmp.path, finetune, {"--data", nowhere, "--seed", seed});
    CHECK(r.code == 2);
    CHECK_MESSAGE(contains(r.err, "--seed"), r.err);
  }
  const Run negative = run(tmp.path, finetune, {"--data", nowhere, "--seed", "-1"});
  CHECK_MESSAGE(contains(negative.err, "--seed: must be a whole number from 0 to 18446744073709551615, got '-1'"),
                negative.err);
  // The largest seed and one with leading zeros pass the command line: the run then fails on the missing folder (1).
  for (const std::string seed : {"18446744073709551615", "007"}) {
    CAPTURE(seed);
    const Run r = run(tmp.path, finetune, {"--data", nowhere, "--seed", seed});
    CHECK(r.code == 1);
    CHECK_MESSAGE(contains(r.err, "nowhere"), r.err);
  }
}
