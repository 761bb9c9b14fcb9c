// GENERATED from export/manifest.schema.json by `python -m export.schema_header`:
// do not edit.  The manifest schema as a table: manifest.cpp walks NODES[0] over manifest.json as
// export/manifest.py's schema_problem walks the schema (the same checks, order and wording).
#pragma once

namespace ldmind::core::schema {

constexpr int MANIFEST_VERSION = 3;

enum Type : unsigned { NUL = 1, BOOLEAN = 2, INTEGER = 4, NUMBER = 8, STRING = 16, ARRAY = 32, OBJECT = 64 };
enum class Op {
    Type, Const, Enum, NotEnum, Required, Properties, AdditionalProperties, Items,
    MinItems, MaxItems, Minimum, ExclusiveMinimum, Maximum, ExclusiveMaximum, MaxLength, Pattern
};

// one keyword of a node
struct Check {
    Op op;
    unsigned types;        // Type: the JSON types allowed (an INTEGER is written without a fraction)
    double bound;          // Const, MinItems ... MaxLength
    int first, count;      // Enum, NotEnum, Required: NAMES[first, first + count); Properties: PROPERTIES[...]
    int node;              // Items, AdditionalProperties: the node every member follows
    const char* pattern;   // Pattern (ECMAScript)
};
struct Node {
    const char* what;      // what a value here must be, as the message says it
    int first, count;      // CHECKS[first, first + count), in the schema's order
};
struct Property {
    const char* name;
    int node;
};

inline constexpr Node NODES[] = {
    {"manifest.json of an ldmind export directory (python -m export)", 100, 3},  // 0
    {"3", 0, 2},  // 1
    {"an object", 4, 3},  // 2
    {"a string", 2, 1},  // 3
    {"an object", 3, 1},  // 4
    {"a finite number > 0", 7, 2},  // 5
    {"an object", 16, 3},  // 6
    {"an integer >= 1", 9, 2},  // 7
    {"true or false", 11, 1},  // 8
    {"a list of 2 or null", 12, 4},  // 9
    {"an object", 29, 3},  // 10
    {"a string", 19, 1},  // 11
    {"a finite number", 20, 1},  // 12
    {"a finite number", 21, 1},  // 13
    {"a finite number", 22, 1},  // 14
    {"a list of at least 1", 26, 3},  // 15
    {"a finite number in (0, 1]", 23, 3},  // 16
    {"an object", 32, 3},  // 17
    {"one of 'fp32', 'fp16', 'int8'", 35, 2},  // 18
    {"an object", 83, 2},  // 19
    {"an object", 80, 3},  // 20
    {"a plain file name (no folder)", 37, 3},  // 21
    {"64 hexadecimal digits", 40, 3},  // 22
    {"a string", 43, 1},  // 23
    {"a list", 52, 2},  // 24
    {"an object", 49, 3},  // 25
    {"a string", 44, 1},  // 26
    {"a string", 45, 1},  // 27
    {"a list", 47, 2},  // 28
    {"an integer or a symbol name", 46, 1},  // 29
    {"a list", 54, 2},  // 30
    {"an object", 62, 2},  // 31
    {"a list of 3", 58, 4},  // 32
    {"an integer >= 0", 56, 2},  // 33
    {"an object", 77, 3},  // 34
    {"a list", 67, 2},  // 35
    {"an object", 64, 3},  // 36
    {"a list of at least 1", 74, 3},  // 37
    {"a list of 2", 70, 4},  // 38
    {"a finite number", 69, 1},  // 39
    {"an object", 85, 3},  // 40
    {"anything", 85, 0},  // 41
    {"anything", 85, 0},  // 42
    {"anything", 85, 0},  // 43
    {"anything", 85, 0},  // 44
    {"an object or null", 97, 3},  // 45
    {"a string", 88, 1},  // 46
    {"a string", 89, 1},  // 47
    {"a version", 90, 1},  // 48
    {"an object", 95, 2},  // 49
    {"an object", 92, 3},  // 50
    {"a list", 91, 1},  // 51
    {"anything", 100, 0},  // 52
};
inline constexpr Check CHECKS[] = {
    {Op::Type, INTEGER, 0, 0, 0, -1, nullptr},  // 0
    {Op::Const, 0, 3.0, 0, 0, -1, nullptr},  // 1
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 2
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 3
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 4
    {Op::Required, 0, 0, 10, 2, -1, nullptr},  // 5
    {Op::Properties, 0, 0, 0, 2, -1, nullptr},  // 6
    {Op::Type, NUMBER, 0, 0, 0, -1, nullptr},  // 7
    {Op::ExclusiveMinimum, 0, 0.0, 0, 0, -1, nullptr},  // 8
    {Op::Type, INTEGER, 0, 0, 0, -1, nullptr},  // 9
    {Op::Minimum, 0, 1.0, 0, 0, -1, nullptr},  // 10
    {Op::Type, BOOLEAN, 0, 0, 0, -1, nullptr},  // 11
    {Op::Type, ARRAY | NUL, 0, 0, 0, -1, nullptr},  // 12
    {Op::MinItems, 0, 2.0, 0, 0, -1, nullptr},  // 13
    {Op::MaxItems, 0, 2.0, 0, 0, -1, nullptr},  // 14
    {Op::Items, 0, 0, 0, 0, 7, nullptr},  // 15
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 16
    {Op::Required, 0, 0, 12, 9, -1, nullptr},  // 17
    {Op::Properties, 0, 0, 2, 9, -1, nullptr},  // 18
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 19
    {Op::Type, NUMBER, 0, 0, 0, -1, nullptr},  // 20
    {Op::Type, NUMBER, 0, 0, 0, -1, nullptr},  // 21
    {Op::Type, NUMBER, 0, 0, 0, -1, nullptr},  // 22
    {Op::Type, NUMBER, 0, 0, 0, -1, nullptr},  // 23
    {Op::ExclusiveMinimum, 0, 0.0, 0, 0, -1, nullptr},  // 24
    {Op::Maximum, 0, 1.0, 0, 0, -1, nullptr},  // 25
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 26
    {Op::MinItems, 0, 1.0, 0, 0, -1, nullptr},  // 27
    {Op::Items, 0, 0, 0, 0, 16, nullptr},  // 28
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 29
    {Op::Required, 0, 0, 21, 6, -1, nullptr},  // 30
    {Op::Properties, 0, 0, 11, 6, -1, nullptr},  // 31
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 32
    {Op::Required, 0, 0, 27, 1, -1, nullptr},  // 33
    {Op::Properties, 0, 0, 17, 1, -1, nullptr},  // 34
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 35
    {Op::Enum, 0, 0, 28, 3, -1, nullptr},  // 36
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 37
    {Op::Pattern, 0, 0, 0, 0, -1, "^[^/]+$"},  // 38
    {Op::NotEnum, 0, 0, 37, 2, -1, nullptr},  // 39
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 40
    {Op::MaxLength, 0, 64.0, 0, 0, -1, nullptr},  // 41
    {Op::Pattern, 0, 0, 0, 0, -1, "^[0-9a-fA-F]{64}$"},  // 42
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 43
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 44
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 45
    {Op::Type, INTEGER | STRING, 0, 0, 0, -1, nullptr},  // 46
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 47
    {Op::Items, 0, 0, 0, 0, 29, nullptr},  // 48
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 49
    {Op::Required, 0, 0, 39, 3, -1, nullptr},  // 50
    {Op::Properties, 0, 0, 18, 3, -1, nullptr},  // 51
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 52
    {Op::Items, 0, 0, 0, 0, 25, nullptr},  // 53
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 54
    {Op::Items, 0, 0, 0, 0, 25, nullptr},  // 55
    {Op::Type, INTEGER, 0, 0, 0, -1, nullptr},  // 56
    {Op::Minimum, 0, 0.0, 0, 0, -1, nullptr},  // 57
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 58
    {Op::MinItems, 0, 3.0, 0, 0, -1, nullptr},  // 59
    {Op::MaxItems, 0, 3.0, 0, 0, -1, nullptr},  // 60
    {Op::Items, 0, 0, 0, 0, 33, nullptr},  // 61
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 62
    {Op::AdditionalProperties, 0, 0, 0, 0, 32, nullptr},  // 63
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 64
    {Op::Required, 0, 0, 45, 4, -1, nullptr},  // 65
    {Op::Properties, 0, 0, 21, 4, -1, nullptr},  // 66
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 67
    {Op::Items, 0, 0, 0, 0, 36, nullptr},  // 68
    {Op::Type, NUMBER, 0, 0, 0, -1, nullptr},  // 69
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 70
    {Op::MinItems, 0, 2.0, 0, 0, -1, nullptr},  // 71
    {Op::MaxItems, 0, 2.0, 0, 0, -1, nullptr},  // 72
    {Op::Items, 0, 0, 0, 0, 39, nullptr},  // 73
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 74
    {Op::MinItems, 0, 1.0, 0, 0, -1, nullptr},  // 75
    {Op::Items, 0, 0, 0, 0, 38, nullptr},  // 76
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 77
    {Op::Required, 0, 0, 42, 3, -1, nullptr},  // 78
    {Op::Properties, 0, 0, 25, 3, -1, nullptr},  // 79
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 80
    {Op::Required, 0, 0, 31, 6, -1, nullptr},  // 81
    {Op::Properties, 0, 0, 28, 7, -1, nullptr},  // 82
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 83
    {Op::AdditionalProperties, 0, 0, 0, 0, 20, nullptr},  // 84
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 85
    {Op::Required, 0, 0, 49, 4, -1, nullptr},  // 86
    {Op::Properties, 0, 0, 35, 4, -1, nullptr},  // 87
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 88
    {Op::Type, STRING, 0, 0, 0, -1, nullptr},  // 89
    {Op::Type, STRING | NUMBER, 0, 0, 0, -1, nullptr},  // 90
    {Op::Type, ARRAY, 0, 0, 0, -1, nullptr},  // 91
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 92
    {Op::Required, 0, 0, 57, 3, -1, nullptr},  // 93
    {Op::Properties, 0, 0, 39, 3, -1, nullptr},  // 94
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 95
    {Op::AdditionalProperties, 0, 0, 0, 0, 50, nullptr},  // 96
    {Op::Type, OBJECT | NUL, 0, 0, 0, -1, nullptr},  // 97
    {Op::Required, 0, 0, 53, 4, -1, nullptr},  // 98
    {Op::Properties, 0, 0, 42, 4, -1, nullptr},  // 99
    {Op::Type, OBJECT, 0, 0, 0, -1, nullptr},  // 100
    {Op::Required, 0, 0, 0, 10, -1, nullptr},  // 101
    {Op::Properties, 0, 0, 46, 11, -1, nullptr},  // 102
};
inline constexpr Property PROPERTIES[] = {
    {"name", 3},  // 0
    {"config", 4},  // 1
    {"z_channels", 7},  // 2
    {"feature_channels", 7},  // 3
    {"ae_downsample", 7},  // 4
    {"cond_scale", 7},  // 5
    {"unet_multiple", 7},  // 6
    {"conditional", 8},  // 7
    {"generation_latent", 9},  // 8
    {"train_latent", 7},  // 9
    {"tile_align", 7},  // 10
    {"name", 11},  // 11
    {"timesteps", 7},  // 12
    {"linear_start", 12},  // 13
    {"linear_end", 13},  // 14
    {"cosine_s", 14},  // 15
    {"alpha_bar", 15},  // 16
    {"query_chunk", 7},  // 17
    {"name", 26},  // 18
    {"dtype", 27},  // 19
    {"shape", 28},  // 20
    {"stride", 5},  // 21
    {"channels", 7},  // 22
    {"heads", 7},  // 23
    {"blocks", 7},  // 24
    {"macs_per_cell", 5},  // 25
    {"attention", 35},  // 26
    {"memory", 37},  // 27
    {"file", 21},  // 28
    {"sha256", 22},  // 29
    {"precision", 23},  // 30
    {"inputs", 24},  // 31
    {"outputs", 30},  // 32
    {"profile", 31},  // 33
    {"cost", 34},  // 34
    {"ldmind", 41},  // 35
    {"torch", 42},  // 36
    {"onnx", 43},  // 37
    {"opset", 44},  // 38
    {"file", 21},  // 39
    {"sha256", 22},  // 40
    {"profiles", 51},  // 41
    {"version", 46},  // 42
    {"gpu", 47},  // 43
    {"compute_capability", 48},  // 44
    {"engines", 49},  // 45
    {"format_version", 1},  // 46
    {"model", 2},  // 47
    {"scale_factor", 5},  // 48
    {"latent", 6},  // 49
    {"schedule", 10},  // 50
    {"liif", 17},  // 51
    {"precision", 18},  // 52
    {"graphs", 19},  // 53
    {"producer", 40},  // 54
    {"tensorrt", 45},  // 55
    {"quantization", 52},  // 56
};
inline constexpr const char* NAMES[] = {
    "format_version",  // 0
    "model",  // 1
    "scale_factor",  // 2
    "latent",  // 3
    "schedule",  // 4
    "liif",  // 5
    "precision",  // 6
    "graphs",  // 7
    "producer",  // 8
    "tensorrt",  // 9
    "name",  // 10
    "config",  // 11
    "z_channels",  // 12
    "feature_channels",  // 13
    "ae_downsample",  // 14
    "cond_scale",  // 15
    "unet_multiple",  // 16
    "conditional",  // 17
    "generation_latent",  // 18
    "train_latent",  // 19
    "tile_align",  // 20
    "name",  // 21
    "timesteps",  // 22
    "linear_start",  // 23
    "linear_end",  // 24
    "cosine_s",  // 25
    "alpha_bar",  // 26
    "query_chunk",  // 27
    "fp32",  // 28
    "fp16",  // 29
    "int8",  // 30
    "file",  // 31
    "sha256",  // 32
    "precision",  // 33
    "inputs",  // 34
    "outputs",  // 35
    "profile",  // 36
    ".",  // 37
    "..",  // 38
    "name",  // 39
    "dtype",  // 40
    "shape",  // 41
    "macs_per_cell",  // 42
    "attention",  // 43
    "memory",  // 44
    "stride",  // 45
    "channels",  // 46
    "heads",  // 47
    "blocks",  // 48
    "ldmind",  // 49
    "torch",  // 50
    "onnx",  // 51
    "opset",  // 52
    "version",  // 53
    "gpu",  // 54
    "compute_capability",  // 55
    "engines",  // 56
    "file",  // 57
    "sha256",  // 58
    "profiles",  // 59
};

// export/specs.py graph_specs: every graph's inputs and outputs, in its order (a generation
// model has neither the graphs nor the tensors marked sr_only)
struct SpecGraph {
    const char* name;
    bool sr_only;
};
struct Dim {
    enum Kind { Size, Symbol, ZChannels, FeatureChannels } kind;   // the last two: the latent's counts
    long long size;        // Size
    const char* symbol;    // Symbol
};
struct SpecTensor {
    int graph;             // SPEC_GRAPHS row
    bool output, sr_only;
    const char* name;
    const char* dtype;
    int first, count;      // SPEC_DIMS[first, first + count)
};

inline constexpr SpecGraph SPEC_GRAPHS[] = {
    {"encoder", true},  // 0
    {"unet_step", false},  // 1
    {"decoder", false},  // 2
    {"liif", false},  // 3
};
inline constexpr SpecTensor SPEC_TENSORS[] = {
    {0, false, true, "lr", "float32", 0, 4},  // 0
    {0, true, true, "cond", "float32", 4, 4},  // 1
    {1, false, false, "z_t", "float32", 8, 4},  // 2
    {1, false, true, "cond", "float32", 12, 4},  // 3
    {1, false, false, "timestep", "int64", 16, 1},  // 4
    {1, false, false, "alpha_bar_t", "float32", 17, 1},  // 5
    {1, false, false, "alpha_bar_prev", "float32", 18, 1},  // 6
    {1, false, false, "sigma_t", "float32", 19, 1},  // 7
    {1, false, false, "noise", "float32", 20, 4},  // 8
    {1, true, false, "z_prev", "float32", 24, 4},  // 9
    {1, true, false, "pred_z0", "float32", 28, 4},  // 10
    {2, false, false, "z", "float32", 32, 4},  // 11
    {2, true, false, "features", "float32", 36, 4},  // 12
    {3, false, false, "features", "float32", 40, 4},  // 13
    {3, false, false, "coord", "float32", 44, 3},  // 14
    {3, false, false, "cell", "float32", 47, 3},  // 15
    {3, true, false, "rgb", "float32", 50, 3},  // 16
};
inline constexpr Dim SPEC_DIMS[] = {
    {Dim::Symbol, 0, "B"},  // 0
    {Dim::Size, 3, nullptr},  // 1
    {Dim::Symbol, 0, "H"},  // 2
    {Dim::Symbol, 0, "W"},  // 3
    {Dim::Symbol, 0, "B"},  // 4
    {Dim::ZChannels, 0, nullptr},  // 5
    {Dim::Symbol, 0, "h"},  // 6
    {Dim::Symbol, 0, "w"},  // 7
    {Dim::Symbol, 0, "B"},  // 8
    {Dim::ZChannels, 0, nullptr},  // 9
    {Dim::Symbol, 0, "h"},  // 10
    {Dim::Symbol, 0, "w"},  // 11
    {Dim::Symbol, 0, "B"},  // 12
    {Dim::ZChannels, 0, nullptr},  // 13
    {Dim::Symbol, 0, "h"},  // 14
    {Dim::Symbol, 0, "w"},  // 15
    {Dim::Symbol, 0, "B"},  // 16
    {Dim::Size, 1, nullptr},  // 17
    {Dim::Size, 1, nullptr},  // 18
    {Dim::Size, 1, nullptr},  // 19
    {Dim::Symbol, 0, "B"},  // 20
    {Dim::ZChannels, 0, nullptr},  // 21
    {Dim::Symbol, 0, "h"},  // 22
    {Dim::Symbol, 0, "w"},  // 23
    {Dim::Symbol, 0, "B"},  // 24
    {Dim::ZChannels, 0, nullptr},  // 25
    {Dim::Symbol, 0, "h"},  // 26
    {Dim::Symbol, 0, "w"},  // 27
    {Dim::Symbol, 0, "B"},  // 28
    {Dim::ZChannels, 0, nullptr},  // 29
    {Dim::Symbol, 0, "h"},  // 30
    {Dim::Symbol, 0, "w"},  // 31
    {Dim::Symbol, 0, "B"},  // 32
    {Dim::ZChannels, 0, nullptr},  // 33
    {Dim::Symbol, 0, "h"},  // 34
    {Dim::Symbol, 0, "w"},  // 35
    {Dim::Symbol, 0, "B"},  // 36
    {Dim::FeatureChannels, 0, nullptr},  // 37
    {Dim::Symbol, 0, "h"},  // 38
    {Dim::Symbol, 0, "w"},  // 39
    {Dim::Symbol, 0, "B"},  // 40
    {Dim::FeatureChannels, 0, nullptr},  // 41
    {Dim::Symbol, 0, "h"},  // 42
    {Dim::Symbol, 0, "w"},  // 43
    {Dim::Symbol, 0, "B"},  // 44
    {Dim::Symbol, 0, "Q"},  // 45
    {Dim::Size, 2, nullptr},  // 46
    {Dim::Symbol, 0, "B"},  // 47
    {Dim::Symbol, 0, "Q"},  // 48
    {Dim::Size, 2, nullptr},  // 49
    {Dim::Symbol, 0, "B"},  // 50
    {Dim::Symbol, 0, "Q"},  // 51
    {Dim::Size, 3, nullptr},  // 52
};

}  // namespace ldmind::core::schema
