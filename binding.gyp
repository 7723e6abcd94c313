{
  "targets": [
    {
      "target_name": "compnet_torch",
      "sources": ["native/compnet_torch.cc", "native/distributed.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node -p \"process.env.COMPNET_TORCH_INCLUDE.split(':').join(' ')\")"
      ],
      "libraries": [
        "<!@(node -p \"process.env.COMPNET_TORCH_LIB.split(':').map(d => '-L' + d + ' -Wl,-rpath,' + d).join(' ')\")",
        "-ltorch", "-ltorch_cpu", "-lc10", "-lgloo", "-fopenmp"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-frtti", "-fexceptions", "-O2", "-fopenmp", "-Wno-unused-parameter", "-Wno-deprecated-declarations", "-Wno-psabi"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "USE_C10D_GLOO", "NAPI_VERSION=8", "_GLIBCXX_USE_CXX11_ABI=<!(node -p \"process.env.COMPNET_TORCH_CXX11_ABI\")"]
    }
  ]
}
