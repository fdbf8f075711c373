// Draws where a trained ViT looks (docs/attention.md): the attention that what its head reads pays to each patch — the
// class token's attention, or, for an average-pooled model without one, the mean attention each patch receives —
// of one head, a grid of all heads of a layer, and the attention rollout over all layers, each as a heatmap PNG with
// a title (layer, head, what the map shows, the predicted class) and a labelled colour bar.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tessera/tessera.hpp>
#include <tessera/io/checkpoint.hpp>
#include <tessera/train/classifier_info.hpp>
#include <tessera/viz/model_attention.hpp>

#include "cli_checks.hpp"

using namespace tessera;

namespace {

const std::map<std::string, viz::Overlay>& overlays() {
  static const std::map<std::string, viz::Overlay> modes = {{"by-value", viz::Overlay::by_value},
                                                            {"uniform", viz::Overlay::uniform}};
  return modes;
}

const std::map<std::string, viz::HeadFusion>& head_fusions() {
  static const std::map<std::string, viz::HeadFusion> fusions = {
      {"mean", viz::HeadFusion::mean}, {"max", viz::HeadFusion::max}, {"min", viz::HeadFusion::min}};
  return fusions;
}

// Index `index` of `count` items, counting from the end when negative (-1 is the last); `what` names it in errors.
int64_t resolve_index(int64_t index, int64_t count, const char* what) {
  const int64_t resolved = index < 0 ? count + index : index;
  TESSERA_CHECK(resolved >= 0 && resolved < count, what, " ", index, " is out of range: the model has ", count, " (",
                what, "s 0 to ", count - 1, ", or -1 to -", count, " from the end)");
  return resolved;
}

int run(int argc, char** argv) {
  CLI::App app{"Attention heatmaps of a checkpoint written by train_cifar10 or finetune, drawn over an image"};
  app.set_help_flag("-h,--help", "Print this help and exit");
  std::filesystem::path checkpoint, image_path, out_dir = "attention";
  std::string name, fusion = "mean", overlay = "by-value";
  int64_t layer = -1, head = 0, size = 224;
  double alpha = viz::HeatmapOptions{}.alpha;
  bool plain = false;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--checkpoint", checkpoint, "Checkpoint (.safetensors) written by train::Trainer")->required();
  app.add_option("--image", image_path, "One image file (png, jpg, jpeg, bmp)")->required();
  app.add_option("--layer", layer, "Block whose heads are drawn, from 0; negative counts from the end (-1: the last)")
      ->capture_default_str();
  app.add_option("--head", head, "Head drawn alone, from 0; negative counts from the end")->capture_default_str();
  app.add_option("--out", out_dir, "Folder the PNGs are written to (created)")->capture_default_str();
  app.add_option("--name", name, "File-name stem of the PNGs (default: the image's)");
  app.add_option("--size", size, "Pictures are enlarged by a whole factor to at least this many pixels a side")
      ->capture_default_str()
      ->check(examples::positive());
  app.add_option("--alpha", alpha, "Largest opacity of the heatmap over the image (see --overlay)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--overlay", overlay,
                 "by-value: opacity grows with the value, so cold pixels keep the photo and a diffuse map barely tints "
                 "it; uniform: the same opacity everywhere")
      ->capture_default_str()
      ->check(CLI::IsMember(overlays()));
  app.add_flag("--plain", plain, "Pictures without title, head numbers and colour bar");
  app.add_option("--rollout-fusion", fusion, "How the rollout fuses the heads of a layer: mean, max or min")
      ->capture_default_str()
      ->check(CLI::IsMember(head_fusions()));
  app.add_option("--threads", threads, "Compute threads (OpenMP)")->capture_default_str()->check(examples::positive());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return examples::usage_exit(app, e);
  }
  set_num_threads(threads);

  // One image per run: a folder is a usage mistake worth naming (classify takes folders).
  std::error_code ec;
  TESSERA_CHECK(!std::filesystem::is_directory(image_path, ec), "--image '", image_path.string(),
                "' is a folder; visualize_attention draws one image, so --image takes one image file (png, jpg, jpeg or "
                "bmp). To classify every image of a folder, use classify --image FOLDER");

  const train::Classifier classifier = train::load_classifier(checkpoint);
  const nn::ViTConfig& config = classifier.config;
  const train::ClassifierInfo& info = classifier.info;
  nn::VisionTransformer<float>& model = *classifier.model;
  TESSERA_CHECK(config.in_chans >= 1 && config.in_chans <= 4, "the model of '", checkpoint.string(), "' takes ",
                config.in_chans, " input channels; images can be decoded into 1 to 4");
  layer = resolve_index(layer, config.depth, "layer");
  head = resolve_index(head, config.num_heads, "head");

  // The model sees the whole image squeezed to its input size, with no crop, so that every map lines up with the
  // picture it is drawn over: that resized image.
  data::Image image = data::decode_image(image_path, static_cast<int>(config.in_chans));
  if (image.height != config.img_size || image.width != config.img_size)
    image = data::Resize(config.img_size, config.img_size)(image);
  const data::Compose preprocess{data::ToTensor(), data::Normalize(info.mean, info.std)};

  // One forward gives every block's attention probabilities; all maps below are read from them.
  const std::vector<Tensor<float>> probs = viz::record_attention(model, image, preprocess);
  // What the maps read: the class token's row, or the mean of the patch rows when the head pools the patches.
  const viz::AttentionQuery query = viz::attention_query(model, image, preprocess);
  Tensor<float> class_probs;
  {
    NoGradGuard no_grad;  // the prediction, for the printout; eval mode as in record_attention
    model.eval();
    Generator generator(0);
    const data::FloatImage x = preprocess(image, generator);
    Tensor<float> input(Shape{1, x.channels, x.height, x.width});
    std::copy(x.values.begin(), x.values.end(), input.data());
    class_probs = ops::softmax(model.forward(input));
  }
  const float* p = class_probs.data();
  const int64_t predicted = std::max_element(p, p + config.num_classes) - p;

  const bool class_token = query.rows == viz::QueryRows::class_token;
  std::ostringstream prediction;
  prediction << "predicted " << info.class_names[static_cast<size_t>(predicted)] << " (" << std::fixed
             << std::setprecision(1) << 100.0 * static_cast<double>(p[predicted]) << "%)";
  // The titles: what each picture shows, in words short enough for a 128-pixel picture.
  const bool weighted = !class_token && !query.patch_weights.empty();  // seqpool: the patch rows pool-weighted
  const std::string map_words = class_token ? "class token attention"
                                : weighted  ? "pool-weighted attention received"
                                            : "mean attention received";
  const std::string rollout_words = class_token ? "flow into class token"
                                    : weighted  ? "flow into sequence pooling"
                                                : "flow into mean pooling";

  viz::HeatmapOptions heatmap;
  heatmap.min_size = size;
  heatmap.alpha = alpha;
  heatmap.overlay = overlays().at(overlay);
  heatmap.colorbar = !plain;
  viz::HeadGridOptions grid;
  grid.heatmap = heatmap;
  grid.columns = config.num_heads <= 6 ? config.num_heads : 0;  // one row when it stays narrow, else a square
  grid.head_numbers = !plain;
  viz::RolloutOptions rollout;
  rollout.head_fusion = head_fusions().at(fusion);
  rollout.query = query;
  auto titled = [plain](viz::HeatmapOptions options, const std::string& title) {
    options.title = plain ? std::string() : title;
    return options;
  };

  std::filesystem::create_directories(out_dir);
  if (name.empty()) name = image_path.stem().string();
  const std::string layer_tag = "_layer" + std::to_string(layer);
  const std::filesystem::path input_png = out_dir / (name + "_input.png"),
                              head_png = out_dir / (name + layer_tag + "_head" + std::to_string(head) + ".png"),
                              heads_png = out_dir / (name + layer_tag + "_heads.png"),
                              rollout_png = out_dir / (name + "_rollout.png");
  viz::HeatmapOptions input_only = titled(heatmap, "input " + std::to_string(config.img_size) + "x" +
                                                         std::to_string(config.img_size) + "\n" + prediction.str());
  input_only.alpha = 0.0;  // no heatmap: the image alone, enlarged like the others
  input_only.colorbar = false;
  const Tensor<float> head_map = viz::attention_map(probs, layer, head, 0, query);
  viz::write_heatmap_png(input_png, head_map, image, input_only);
  viz::write_heatmap_png(head_png, head_map, image,
                         titled(heatmap, "layer " + std::to_string(layer) + ", head " + std::to_string(head) + "\n" +
                                             map_words + "\n" + prediction.str()));
  grid.heatmap.title = plain ? std::string()
                             : "layer " + std::to_string(layer) + ": " + map_words + ", " + prediction.str();
  viz::write_head_grid_png(heads_png, viz::attention_maps(probs, layer, 0, query), image, grid);
  viz::write_heatmap_png(rollout_png, viz::attention_rollout(probs, 0, rollout), image,
                         titled(heatmap, "rollout, " + std::to_string(config.depth) + " layers\n" + rollout_words +
                                             "\n" + prediction.str()));

  std::cout << image_path.string() << ": predicted " << info.class_names[static_cast<size_t>(predicted)] << " ("
            << std::fixed << std::setprecision(2) << 100.0 * static_cast<double>(p[predicted]) << "%)\n";
  std::cout << "the maps show " << viz::describe(query) << " (global_pool \"" << config.global_pool << "\"); "
            << (class_token ? "the rollout, how much each patch flows into the class token through all blocks"
                            : "the rollout, how much each patch flows into the pooled patch tokens through all blocks")
            << "\n";
  std::cout << "wrote " << input_png.string() << " (the image as the model sees it)\n";
  std::cout << "wrote " << head_png.string() << " (layer " << layer << ", head " << head << ")\n";
  std::cout << "wrote " << heads_png.string() << " (layer " << layer << ", every head)\n";
  std::cout << "wrote " << rollout_png.string() << " (attention rollout over all " << config.depth << " blocks, heads "
            << fusion << "-fused)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "visualize_attention: error: " << e.what() << std::endl;
    return 1;
  }
}
