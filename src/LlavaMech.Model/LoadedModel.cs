using LlavaMech.Checkpoints;
using LlavaMech.Hooks;
using LlavaMech.Model.Devices;
using LlavaMech.Model.Language;
using LlavaMech.Model.Loading;
using LlavaMech.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaMech.Model;

/// <summary>Where and in which precision to run a model.</summary>
/// <param name="Device">cpu, cuda, cuda:N or auto.</param>
/// <param name="DType">auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16 or float16.</param>
public sealed record ModelLoadOptions(string Device = "cpu", string DType = "auto");

/// <summary>One prompt (and image) turned into model inputs.</summary>
/// <param name="InputIds">[T] token ids, BOS first, image tokens expanded.</param>
/// <param name="PixelValues">[3, S, S] normalized pixels, or null for a text-only prompt.</param>
/// <param name="ImageLayout">where the image tokens are in <paramref name="InputIds"/> and which patch each one is; null without an image.</param>
public sealed record ModelInput(long[] InputIds, float[]? PixelValues, ImageTokenLayout? ImageLayout, PreprocessedImage? Image, string Prompt, string? ImagePath)
{
    public int SeqLen => InputIds.Length;

    /// <summary>Positions of the image tokens in <see cref="InputIds"/>, ascending; empty without an image.</summary>
    public int[] ImagePositions => ImageLayout?.Positions ?? [];
}

/// <summary>
/// A checkpoint folder made ready for hooked passes: configuration, the network on its device,
/// the tokenizer and (for Llava) the image processor. Llava and plain Llama checkpoints both load
/// here; a Llama model simply has no vision tower.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    private LoadedModel(string dir, ModelConfig config, Device device, ScalarType dtype, nn.Module network,
        LlavaForConditionalGeneration? llava, LlamaForCausalLM lm, ITextTokenizer tokenizer, ClipImageProcessor? images, PromptEncoder prompts)
    {
        Directory = dir; Config = config; Device = device; DType = dtype; Network = network;
        Llava = llava; LanguageModel = lm; Tokenizer = tokenizer; ImageProcessor = images; Prompts = prompts;
    }

    public string Directory { get; }
    public ModelConfig Config { get; }
    public Device Device { get; }
    public ScalarType DType { get; }
    public nn.Module Network { get; }
    public LlavaForConditionalGeneration? Llava { get; }
    public LlamaForCausalLM LanguageModel { get; }
    public ITextTokenizer Tokenizer { get; }
    public ClipImageProcessor? ImageProcessor { get; }
    public PromptEncoder Prompts { get; }
    public bool HasVision => Llava is not null;
    public int Layers => Config.Text.NumHiddenLayers;

    /// <summary>Validates config, tokenizer and weights (config.json against the safetensors headers:
    /// <see cref="ConfigWeightsCheck"/>), then builds the network on the chosen device.</summary>
    public static LoadedModel Load(string dir, ModelLoadOptions? options = null)
    {
        options ??= new ModelLoadOptions();
        if (!System.IO.Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder '{dir}' does not exist");
        var config = ModelConfig.Load(dir);
        var device = TorchRuntime.ResolveDevice(options.Device);
        var dtype = TorchRuntime.ResolveDType(options.DType, device);
        // Cheap checks first, so a bad tokenizer or image config fails before gigabytes are read.
        var tokenizer = TokenizerLoader.Load(dir);
        var images = config.Kind == ModelKind.Llava ? ClipImageProcessor.FromDirectory(dir) : null;
        var prompts = new PromptEncoder(tokenizer, config.Text.BosTokenId,
            config.Kind == ModelKind.Llava ? config.ImageTokenId : null, config.ImageSeqLength, config.Text.MaxPositionEmbeddings, dir);

        using var checkpoint = Checkpoint.Open(dir);
        // config.json against the headers before any module is sized from it (a hostile size would allocate first).
        ConfigWeightsCheck.Validate(config, checkpoint);
        LlavaForConditionalGeneration? llava = null;
        LlamaForCausalLM lm;
        nn.Module network;
        if (config.Kind == ModelKind.Llava)
        {
            llava = new LlavaForConditionalGeneration(config, device, dtype);
            lm = llava.LanguageModel;
            network = llava;
        }
        else
        {
            lm = new LlamaForCausalLM(config.Text, device, dtype);
            network = lm;
        }
        network.eval();

        string lmHead = config.Kind == ModelKind.Llava ? "language_model.lm_head.weight" : "lm_head.weight";
        bool tied = config.Text.TieWordEmbeddings && !checkpoint.Tensors.ContainsKey(WeightNames.ToFile(lmHead, WeightNames.Detect(checkpoint, config.Kind)));
        WeightLoader.Load(network, checkpoint, config.Kind, tied ? new HashSet<string> { lmHead } : null);
        if (tied)
        {
            using var noGrad = no_grad();
            lm.LmHead.Weight.copy_(lm.Model.EmbedTokens.Weight);
        }
        return new LoadedModel(dir, config, device, dtype, network, llava, lm, tokenizer, images, prompts);
    }

    /// <summary>
    /// A model at a configuration's shapes with random weights (N(0, std), norms 1), for benchmarks
    /// at real sizes without a checkpoint. It has no tokenizer: feed it token ids, not prompts.
    /// </summary>
    public static LoadedModel CreateRandom(ModelConfig config, ModelLoadOptions? options = null, long seed = 1, double std = 0.02)
    {
        options ??= new ModelLoadOptions();
        var device = TorchRuntime.ResolveDevice(options.Device);
        var dtype = TorchRuntime.ResolveDType(options.DType, device);
        LlavaForConditionalGeneration? llava = null;
        LlamaForCausalLM lm;
        nn.Module network;
        if (config.Kind == ModelKind.Llava) { llava = new LlavaForConditionalGeneration(config, device, dtype); lm = llava.LanguageModel; network = llava; }
        else { lm = new LlamaForCausalLM(config.Text, device, dtype); network = lm; }
        network.eval();
        RandomWeights.Fill(network, seed, std);
        var tokenizer = new NoTokenizer(config.SourcePath);
        var prompts = new PromptEncoder(tokenizer, config.Text.BosTokenId, config.Kind == ModelKind.Llava ? config.ImageTokenId : null,
            config.ImageSeqLength, config.Text.MaxPositionEmbeddings, config.SourcePath);
        return new LoadedModel(config.SourcePath, config, device, dtype, network, llava, lm, tokenizer, null, prompts);
    }

    /// <summary>Stands in for the tokenizer of a model built from a config alone.</summary>
    private sealed class NoTokenizer(string source) : ITextTokenizer
    {
        private ProcessingException Missing() => new($"model built from '{source}' with random weights has no tokenizer: give token ids, not text");
        public int[] Encode(string text) => throw Missing();
        public string IdToToken(int id) => $"<id:{id}>";
        public string Decode(IReadOnlyList<int> ids) => string.Join(" ", ids.Select(IdToToken));
        public int? TokenToId(string token) => null;
        public int VocabSize => 0;
        public int? BosId => null;
    }

    /// <summary>
    /// Tokenizes the prompt (expanding &lt;image&gt;) and preprocesses the image, if any. A prompt over
    /// <paramref name="maxPromptTokens"/> (0: the model's max_position_embeddings) is refused before the image is read.
    /// </summary>
    public ModelInput Prepare(string prompt, string? imagePath, int maxPromptTokens = 0)
    {
        if (imagePath is not null && !HasVision)
            throw new ProcessingException($"model '{Directory}' is a text-only {Config.Kind} model; it cannot take an image ('{imagePath}')");
        var encoding = Prompts.Encode(prompt, hasImage: imagePath is not null, maxPromptTokens);
        var image = imagePath is null ? null : ImageProcessor!.Preprocess(imagePath);
        return new ModelInput(encoding.InputIds, image?.PixelValues, ImageLayoutOf(encoding), image, prompt, imagePath);
    }

    /// <summary>The image-token layout of an encoded prompt (null without image tokens), from the configuration.</summary>
    public ImageTokenLayout? ImageLayoutOf(PromptEncoding encoding)
    {
        if (encoding.ImagePositions.Length == 0) return null;
        var layout = LlavaImageLayout.For(Config, encoding.ImagePositions[0]);
        if (!layout.Positions.AsSpan().SequenceEqual(encoding.ImagePositions))
            throw new ProcessingException($"model '{Directory}': the prompt's {encoding.ImagePositions.Length} image tokens from position {encoding.ImagePositions[0]} " +
                $"are not the {layout.Count} contiguous tokens its image-token layout has");
        return layout;
    }

    /// <summary>Input tensors of one example: ids [1, T] and pixels [1, 3, S, S] (or null).</summary>
    public (Tensor Ids, Tensor? Pixels) ToTensors(ModelInput input) => ToTensors([input]);

    /// <summary>
    /// Inputs of equal length and image geometry as one batch: ids [B, T] and pixels [B, 3, H, W] (no padding, so no
    /// attention mask). Throws <see cref="ArgumentException"/> for inputs that cannot share a pass.
    /// </summary>
    public (Tensor Ids, Tensor? Pixels) ToTensors(IReadOnlyList<ModelInput> inputs)
    {
        if (inputs.Count == 0) throw new ArgumentException("a batch needs at least one input", nameof(inputs));
        var first = inputs[0];
        var g = first.Image?.Geometry;
        if (inputs.Any(i => i.InputIds.Length != first.InputIds.Length || (i.PixelValues is null) != (first.PixelValues is null)
                            || i.Image?.Geometry.CropHeight != g?.CropHeight || i.Image?.Geometry.CropWidth != g?.CropWidth))
            throw new ArgumentException("inputs of one batch need equal lengths and image sizes", nameof(inputs));
        var ids = tensor(inputs.Count == 1 ? first.InputIds : inputs.SelectMany(i => i.InputIds).ToArray(), [inputs.Count, first.InputIds.Length], device: Device);
        Tensor? pixels = null;
        if (first.PixelValues is not null)
            pixels = tensor(inputs.Count == 1 ? first.PixelValues : inputs.SelectMany(i => i.PixelValues!).ToArray(),
                [inputs.Count, 3, g!.CropHeight, g.CropWidth], device: Device);
        return (ids, pixels);
    }

    /// <summary>One forward pass; the cache (if any) keeps what its plan asks for.</summary>
    /// <returns>logits [B, R, V], float32, at <paramref name="logitPositions"/> (null: last position).</returns>
    public Tensor Forward(Tensor inputIds, Tensor? pixels, ActivationCache? cache = null, long[]? logitPositions = null)
    {
        using var mode = inference_mode();
        if (Llava is not null) return Llava.Forward(inputIds, pixels, cache, logitPositions);
        if (pixels is not null) throw new ArgumentException("a text-only model takes no pixels");
        return LanguageModel.Forward(LanguageModel.Model.EmbedTokens.call(inputIds), cache, logitPositions);
    }

    /// <summary>Input embeddings [B, T, D]: token embeddings with the image features spliced in.</summary>
    public Tensor Embed(Tensor inputIds, Tensor? pixels, ActivationCache? cache = null)
    {
        if (Llava is not null) return Llava.Embed(inputIds, pixels, cache);
        if (pixels is not null) throw new ArgumentException("a text-only model takes no pixels");
        return LanguageModel.Model.EmbedTokens.call(inputIds);
    }

    /// <summary>
    /// The decoder from given input embeddings [B, T, D]: for interventions on the embeddings
    /// (occlusion, deletion curves) and, with gradients enabled by the caller, gradient attributions.
    /// </summary>
    /// <returns>logits [B, R, V], float32.</returns>
    public Tensor ForwardEmbeds(Tensor embeds, ActivationCache? cache = null, long[]? logitPositions = null) =>
        LanguageModel.Forward(embeds, cache, logitPositions);

    /// <summary>Forward pass of one prepared example; logits [V] at the last position.</summary>
    public Tensor Forward(ModelInput input, ActivationCache? cache = null)
    {
        var (ids, pixels) = ToTensors(input);
        return Forward(ids, pixels, cache)[0, 0];
    }

    /// <summary>A token for display: the vocabulary piece, with SentencePiece's space marker shown as a space.</summary>
    public string TokenText(int id) => Tokenizer.IdToToken(id).Replace('\u2581', ' ');

    // Views of the weights the readouts need (no copies).
    public Tensor FinalNormWeight => LanguageModel.Model.Norm.Weight;                                    // [D]
    public Tensor LmHeadWeight => LanguageModel.LmHead.Weight;                                           // [V, D]
    public IReadOnlyList<Tensor> OProj => LanguageModel.Model.Layers.Select(l => l.SelfAttn.OProj.Weight).ToList(); // [D, H*d] each
    public IReadOnlyList<Tensor> DownProj => LanguageModel.Model.Layers.Select(l => l.Mlp.DownProj.Weight).ToList(); // [D, I] each

    public void Dispose() => Network.Dispose();
}
