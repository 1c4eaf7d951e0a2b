using LlavaMech.Model.Devices;
using LlavaMech.Model.Language;
using LlavaMech.Model.Loading;
using LlavaMech.Processing;

namespace LlavaMech.Model;

/// <summary>Where and in which precision to run a model.</summary>
/// <param name="Device">cpu, cuda, cuda:N or auto.</param>
/// <param name="DType">auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16 or float16.</param>
public sealed record ModelLoadOptions(string Device = "cpu", string DType = "auto");

/// <summary>One prompt (and image) turned into model inputs.</summary>
/// <param name="InputIds">[T] token ids, BOS first, image tokens expanded.</param>
/// <param name="PixelValues">[3, S, S] normalized pixels ([n_tiles, 3, S, S] for LLaVA-NeXT, base tile first), or null for a text-only prompt.</param>
/// <param name="ImageLayout">where the image tokens are in <paramref name="InputIds"/> and which patch each one is; null without an image.</param>
public sealed record ModelInput(long[] InputIds, float[]? PixelValues, ImageTokenLayout? ImageLayout, PreprocessedImage? Image, string Prompt, string? ImagePath)
{
    public int SeqLen => InputIds.Length;

    /// <summary>Positions of the image tokens in <see cref="InputIds"/>, ascending; empty without an image.</summary>
    public int[] ImagePositions => ImageLayout?.Positions ?? [];
}

/// <summary>
/// A checkpoint folder made ready for hooked passes: configuration, the network on its device,
/// the tokenizer and (for Llava) the image processor. The model of every <see cref="DecoderFamily"/>
/// (LLaVA-1.5 and plain Llama/Vicuna today): a Llama model simply has no vision tower.
/// </summary>
public sealed class LoadedModel : IHookedModel
{
    private LoadedModel(string dir, ModelConfig config, DecoderFamily family, Device device, ScalarType dtype, DecoderNetwork net,
        ITextTokenizer tokenizer, IImageProcessor? images, PromptEncoder prompts)
    {
        Directory = dir; Config = config; DecoderFamily = family; Device = device; DType = dtype; Network = net.Network;
        Vision = net.Vision; LanguageModel = net.LanguageModel; Tokenizer = tokenizer; Images = images; Prompts = prompts;
    }

    public string Directory { get; }
    public ModelConfig Config { get; }
    public DecoderFamily DecoderFamily { get; }
    public IModelFamily Family => DecoderFamily;
    public Device Device { get; }
    public ScalarType DType { get; }
    public nn.Module Network { get; }
    /// <summary>The vision-language network (LLaVA-1.5 or LLaVA-NeXT); null for a text-only model.</summary>
    public IVisionLanguageNetwork? Vision { get; }
    /// <summary>The LLaVA-1.5 network, when this is one.</summary>
    public LlavaForConditionalGeneration? Llava => Vision as LlavaForConditionalGeneration;
    public LlamaForCausalLM LanguageModel { get; }
    public ITextTokenizer Tokenizer { get; }
    /// <summary>The family's image processor (CLIP's, or LLaVA-NeXT's tiling one); null for a text-only model.</summary>
    public IImageProcessor? Images { get; }
    /// <summary>The CLIP image processor, when the family uses it directly (LLaVA-1.5).</summary>
    public ClipImageProcessor? ImageProcessor => Images as ClipImageProcessor;
    public PromptEncoder Prompts { get; }
    public bool HasVision => Vision is not null;
    public int Layers => Config.Text.NumHiddenLayers;
    public int Heads => Config.Text.NumAttentionHeads;
    public int KeyValueHeads => Config.Text.NumKeyValueHeads;
    public int HeadDim => Config.Text.HeadDim;
    public int VisionLayersRun => Vision?.VisionLayersRun ?? 0;

    /// <summary>Validates config, tokenizer and weights (config.json against the safetensors headers:
    /// <see cref="ConfigWeightsCheck"/>), then builds the network on the chosen device. The family comes from
    /// config.json's model_type (<see cref="ModelFamilies"/>).</summary>
    /// <exception cref="CheckpointException">Among others: a model_type no family claims, or one whose family is not a <see cref="DecoderFamily"/>.</exception>
    public static LoadedModel Load(string dir, ModelLoadOptions? options = null)
    {
        if (!System.IO.Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder '{dir}' does not exist");
        var family = ModelFamilies.Resolve(dir) as DecoderFamily
            ?? throw new CheckpointException($"model '{dir}' is of a family without a Llama decoder; load it with ModelFamilies.Load");
        return Load(dir, options, family);
    }

    internal static LoadedModel Load(string dir, ModelLoadOptions? options, DecoderFamily family)
    {
        options ??= new ModelLoadOptions();
        if (!System.IO.Directory.Exists(dir)) throw new DirectoryNotFoundException($"model folder '{dir}' does not exist");
        var config = ModelConfig.Load(dir);
        if (config.Kind != family.DecoderKind)
            throw new CheckpointException($"config '{config.SourcePath}' is a {config.Kind} configuration, not one of the {family.Name} family");
        var device = TorchRuntime.ResolveDevice(options.Device);
        var dtype = TorchRuntime.ResolveDType(options.DType, device);
        // Cheap checks first, so a bad tokenizer or image config fails before gigabytes are read.
        var tokenizer = TokenizerLoader.Load(dir);
        var images = family.TakesImages ? family.LoadImageProcessor(dir, config) : null;
        var prompts = new PromptEncoder(tokenizer, config.Text.BosTokenId,
            family.TakesImages ? config.ImageTokenId : null, config.ImageSeqLength, config.Text.MaxPositionEmbeddings, dir);

        using var checkpoint = Checkpoint.Open(dir);
        // config.json against the headers before any module is sized from it (a hostile size would allocate first).
        ConfigWeightsCheck.Validate(config, checkpoint);
        var net = family.Build(config, device, dtype);
        net.Network.eval();

        string lmHead = family.LmHeadWeight;
        bool tied = config.Text.TieWordEmbeddings && !checkpoint.Tensors.ContainsKey(WeightNames.ToFile(lmHead, WeightNames.Detect(checkpoint, config.Kind)));
        WeightLoader.Load(net.Network, checkpoint, config.Kind, tied ? new HashSet<string> { lmHead } : null);
        if (tied)
        {
            using var noGrad = no_grad();
            net.LanguageModel.LmHead.Weight.copy_(net.LanguageModel.Model.EmbedTokens.Weight);
        }
        return new LoadedModel(dir, config, family, device, dtype, net, tokenizer, images, prompts);
    }

    /// <summary>
    /// A model at a configuration's shapes with random weights (N(0, std), norms 1), for benchmarks
    /// at real sizes without a checkpoint. It has no tokenizer: feed it token ids, not prompts.
    /// </summary>
    public static LoadedModel CreateRandom(ModelConfig config, ModelLoadOptions? options = null, long seed = 1, double std = 0.02)
    {
        options ??= new ModelLoadOptions();
        var family = ModelFamilies.Resolve(config) as DecoderFamily
            ?? throw new CheckpointException($"config '{config.SourcePath}' is of a family without a Llama decoder");
        var device = TorchRuntime.ResolveDevice(options.Device);
        var dtype = TorchRuntime.ResolveDType(options.DType, device);
        var net = family.Build(config, device, dtype);
        net.Network.eval();
        RandomWeights.Fill(net.Network, seed, std);
        var tokenizer = new NoTokenizer(config.SourcePath);
        var prompts = new PromptEncoder(tokenizer, config.Text.BosTokenId, family.TakesImages ? config.ImageTokenId : null,
            config.ImageSeqLength, config.Text.MaxPositionEmbeddings, config.SourcePath);
        return new LoadedModel(config.SourcePath, config, family, device, dtype, net, tokenizer, null, prompts);
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
        // A family whose token count follows the image's size reads the image first (the count is computed once, from its size).
        PreprocessedImage? image = imagePath is not null && DecoderFamily.TokensFollowImage ? Images!.Preprocess(imagePath) : null;
        var encoding = Prompts.Encode(prompt, hasImage: imagePath is not null, maxPromptTokens,
            image is null ? null : DecoderFamily.ImageTokens(Config, image));
        image ??= imagePath is null ? null : Images!.Preprocess(imagePath);
        return new ModelInput(encoding.InputIds, image?.PixelValues, ImageLayoutOf(encoding, image), image, prompt, imagePath);
    }

    /// <summary>The image-token layout of an encoded prompt (null without image tokens), from the configuration and the image.</summary>
    public ImageTokenLayout? ImageLayoutOf(PromptEncoding encoding, PreprocessedImage? image = null)
    {
        if (encoding.ImagePositions.Length == 0) return null;
        var layout = DecoderFamily.ImageLayout(Config, encoding.ImagePositions[0], image);
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
                            || i.Image?.Geometry.CropHeight != g?.CropHeight || i.Image?.Geometry.CropWidth != g?.CropWidth
                            || i.Image?.Tiles != first.Image?.Tiles))
            throw new ArgumentException("inputs of one batch need equal lengths and image sizes", nameof(inputs));
        var ids = tensor(inputs.Count == 1 ? first.InputIds : inputs.SelectMany(i => i.InputIds).ToArray(), [inputs.Count, first.InputIds.Length], device: Device);
        Tensor? pixels = null;
        if (first.PixelValues is not null)
            pixels = tensor(inputs.Count == 1 ? first.PixelValues : inputs.SelectMany(i => i.PixelValues!).ToArray(),
                first.Image!.Anyres is not null ? [inputs.Count, first.Image.Tiles, 3, g!.CropHeight, g.CropWidth] : [inputs.Count, 3, g!.CropHeight, g.CropWidth],
                device: Device);
        return (ids, pixels);
    }

    /// <summary>
    /// One forward pass. <paramref name="hooks"/> reads and edits hook points: an <see cref="ActivationCache"/> keeps
    /// what its plan asks for, <see cref="HookEdits"/> replace tensors, a <see cref="HookChain"/> does both in one pass.
    /// </summary>
    /// <param name="inputIds">[B, T]</param><param name="pixels">[B, 3, S, S] or null.</param>
    /// <param name="imageLayouts">per batch row, where its image tokens are, for hooks that ask (null: unknown;
    /// the prepared-input overloads pass them).</param>
    /// <returns>logits [B, R, V], float32, at <paramref name="logitPositions"/> (null: last position).</returns>
    public Tensor Forward(Tensor inputIds, Tensor? pixels, IHookSet? hooks = null, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null)
    {
        using var mode = inference_mode();
        if (Vision is not null) return Vision.Forward(inputIds, pixels, hooks, logitPositions, imageLayouts);
        if (pixels is not null) throw new ArgumentException("a text-only model takes no pixels");
        return LanguageModel.Forward(LanguageModel.Model.EmbedTokens.call(inputIds), hooks, logitPositions, imageLayouts);
    }

    /// <summary>Prepared inputs as one batch (<see cref="ToTensors(IReadOnlyList{ModelInput})"/>), their image layouts given to the hooks.</summary>
    /// <returns>logits [B, R, V], float32.</returns>
    public Tensor Forward(IReadOnlyList<ModelInput> inputs, IHookSet? hooks = null, long[]? logitPositions = null)
    {
        var (ids, pixels) = ToTensors(inputs);
        return Forward(ids, pixels, hooks, logitPositions, inputs.Select(i => i.ImageLayout).ToArray());
    }

    /// <summary>
    /// Runs the first <paramref name="length"/> tokens of <paramref name="input"/> (its image, whose tokens must all lie
    /// among them, included) once and keeps what later passes over the rest need (docs/METHOD.md, "Prefix reuse"): every
    /// layer's keys and values (<see cref="DecoderPrefix"/>) and, with <paramref name="keep"/>, the hooks it names at the
    /// positions it names (e.g. <c>vision.hook_image_features</c>), left in <paramref name="kept"/>.
    /// </summary>
    public DecoderPrefix Prefix(ModelInput input, int length, CapturePlan? keep = null, ActivationCache? kept = null)
    {
        if (length < 1 || length >= input.SeqLen)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"a prefix of a {input.SeqLen}-token input leaves at least one token after it");
        if (input.ImagePositions.Length > 0 && input.ImagePositions[^1] >= length)
            throw new ArgumentException($"the prefix of {length} tokens ends before the image's last token (position {input.ImagePositions[^1]})", nameof(length));
        using var mode = inference_mode();
        var plan = new CapturePlan();
        for (int l = 0; l < Layers; l++) plan.Add(HookNames.AttnK(l)).Add(HookNames.AttnV(l));
        if (keep is not null) foreach (var (hook, at) in keep.Hooks) plan.Add(hook, at);
        using var cache = new ActivationCache(plan);
        var (_, pixels) = ToTensors(input);
        var ids = tensor(input.InputIds.AsSpan(0, length).ToArray(), [1, length], device: Device);
        using (NewDisposeScope()) Forward(ids, pixels, cache, null, [input.ImageLayout]);
        if (kept is not null && keep is not null)
            foreach (var hook in keep.Hooks.Keys)
            {
                using var taken = cache.Take(hook);
                kept.Put(hook, taken);   // keeps its own handle
            }
        return new DecoderPrefix(input.InputIds.AsSpan(0, length).ToArray(),
            Enumerable.Range(0, Layers).Select(l => cache.Take(HookNames.AttnK(l))).ToArray(),
            Enumerable.Range(0, Layers).Select(l => cache.Take(HookNames.AttnV(l))).ToArray());
    }

    /// <summary>
    /// A pass over the tokens after <paramref name="prefix"/> of inputs that all start with it (equal lengths; no image
    /// token after it), attending to its cached keys and values: the same logits and hook values at those positions as a
    /// full pass over each input (docs/METHOD.md, "Prefix reuse"). Hooks see the whole sequence's positions
    /// (<see cref="PassInfo.QueryOffset"/>); <paramref name="logitPositions"/> count from the prefix's end (null: last).
    /// </summary>
    /// <returns>logits [B, R, V], float32.</returns>
    public Tensor ForwardAfter(DecoderPrefix prefix, IReadOnlyList<ModelInput> inputs, IHookSet? hooks = null, long[]? logitPositions = null)
    {
        if (inputs.Count == 0) throw new ArgumentException("a batch needs at least one input", nameof(inputs));
        int p = prefix.Length, t = inputs[0].SeqLen;
        foreach (var i in inputs)
        {
            if (!prefix.Precedes(i.InputIds)) throw new ArgumentException($"an input of {i.SeqLen} tokens does not start with the {p}-token prefix (or ends with it)", nameof(inputs));
            if (i.SeqLen != t) throw new ArgumentException("inputs after one prefix need equal lengths", nameof(inputs));
            if (i.ImagePositions.Length > 0 && i.ImagePositions[^1] >= p) throw new ArgumentException("an image token lies after the prefix", nameof(inputs));
        }
        using var mode = inference_mode();
        var ids = tensor(inputs.SelectMany(i => i.InputIds.Skip(p)).ToArray(), [inputs.Count, t - p], device: Device);
        return LanguageModel.Forward(LanguageModel.Model.EmbedTokens.call(ids), hooks, logitPositions, inputs.Select(i => i.ImageLayout).ToArray(), prefix);
    }

    /// <summary>Input embeddings [B, T, D]: token embeddings with the image features spliced in.</summary>
    /// <param name="imageLayouts">per batch row, its image layout (LLaVA-NeXT packs its tiles by it; the others may leave it null).</param>
    public Tensor Embed(Tensor inputIds, Tensor? pixels, IHookSet? hooks = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null)
    {
        if (Vision is not null) return Vision.Embed(inputIds, pixels, hooks, imageLayouts);
        if (pixels is not null) throw new ArgumentException("a text-only model takes no pixels");
        return LanguageModel.Model.EmbedTokens.call(inputIds);
    }

    /// <summary>
    /// The decoder from given input embeddings [B, T, D]: for interventions on the embeddings
    /// (occlusion, deletion curves) and, with gradients enabled by the caller, gradient attributions.
    /// </summary>
    /// <returns>logits [B, R, V], float32.</returns>
    public Tensor ForwardEmbeds(Tensor embeds, IHookSet? hooks = null, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null) =>
        LanguageModel.Forward(embeds, hooks, logitPositions, imageLayouts);

    /// <summary>Forward pass of one prepared example; logits [V] at the last position.</summary>
    public Tensor Forward(ModelInput input, IHookSet? hooks = null) => Forward(new[] { input }, hooks)[0, 0];

    /// <summary>A token for display: the vocabulary piece, with SentencePiece's space marker shown as a space.</summary>
    public string TokenText(int id) => Tokenizer.IdToToken(id).Replace('\u2581', ' ');

    // Views of the weights the readouts need (no copies).
    public Tensor FinalNormWeight => LanguageModel.Model.Norm.Weight;                                    // [D]
    public double FinalNormEps => LanguageModel.Model.Norm.Eps;
    public Tensor LmHeadWeight => LanguageModel.LmHead.Weight;                                           // [V, D]
    public IReadOnlyList<Tensor> OProj => LanguageModel.Model.Layers.Select(l => l.SelfAttn.OProj.Weight).ToList(); // [D, H*d] each
    public IReadOnlyList<Tensor> DownProj => LanguageModel.Model.Layers.Select(l => l.Mlp.DownProj.Weight).ToList(); // [D, I] each

    public void Dispose() => Network.Dispose();
}
