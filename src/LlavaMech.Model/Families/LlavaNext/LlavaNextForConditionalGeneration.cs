using LlavaMech.Model.Language;
using LlavaMech.Model.Vision;
using TorchSharp.Modules;

namespace LlavaMech.Model;

/// <summary>
/// LLaVA-NeXT (transformers' <c>LlavaNextForConditionalGeneration</c>, docs/METHOD_NEXT.md sections 5 to 7): every tile of
/// every image through the CLIP tower as one batch, the chosen hidden state(s) without CLS, the projector per tile, then per
/// image the base tile's features followed by the unpadded high-resolution grid, each kept row ending in
/// <c>image_newline</c>; the packed features replace the image tokens' embeddings in order.
/// </summary>
public sealed class LlavaNextForConditionalGeneration : nn.Module, IVisionLanguageNetwork
{
    private readonly ClipVisionModel vision_tower;
    private readonly LlavaMultiModalProjector multi_modal_projector;
    private readonly LlamaForCausalLM language_model;
    private readonly Parameter image_newline; // [D]
    private readonly int[] _featureLayers;

    public LlavaNextForConditionalGeneration(ModelConfig c, Device device, ScalarType dtype) : base(nameof(LlavaNextForConditionalGeneration))
    {
        Config = c;
        var v = c.Vision ?? throw new ArgumentException("a LLaVA-NeXT model needs a vision_config", nameof(c));
        if (c.VisionFeatureSelectStrategy != "default")
            throw new CheckpointException($"config '{c.SourcePath}': vision_feature_select_strategy '{c.VisionFeatureSelectStrategy}' is refused for llava_next " +
                                          "(with tiles only 'default' packs: every tile must give patch-grid rows)");
        _featureLayers = c.FeatureLayers.ToArray();
        vision_tower = new ClipVisionModel(v, device, dtype);
        multi_modal_projector = new LlavaMultiModalProjector((long)v.HiddenSize * _featureLayers.Length, c.Text.HiddenSize, c.MultimodalProjectorBias,
            c.ProjectorHiddenAct, device, dtype);
        language_model = new LlamaForCausalLM(c.Text, device, dtype);
        image_newline = new Parameter(empty(c.Text.HiddenSize, dtype: dtype, device: device), requires_grad: false);
        RegisterComponents();
    }

    public ModelConfig Config { get; }
    public ClipVisionModel VisionTower => vision_tower;
    public LlamaForCausalLM LanguageModel => language_model;
    public Tensor ImageNewline => image_newline;

    /// <summary>Vision encoder layers a pass runs (up to the deepest of <c>vision_feature_layer</c>).</summary>
    public int VisionLayersRun => _featureLayers.Max(vision_tower.LayersRun);

    /// <summary>Projector outputs per tile: [n, p*p, D] for <paramref name="tiles"/> [n, 3, S, S] (CLS dropped).</summary>
    public Tensor TileFeatures(Tensor tiles, HookPass? hooks = null)
    {
        Tensor hidden;
        if (_featureLayers.Length == 1) hidden = vision_tower.HiddenState(tiles, _featureLayers[0], hooks);
        else
        {
            var states = vision_tower.HiddenStates(tiles, _featureLayers, hooks);
            hidden = cat(states, -1);
        }
        hidden = hidden.narrow(1, 1, hidden.shape[1] - 1);
        return multi_modal_projector.call(hidden);
    }

    /// <summary>
    /// One image's packed sequence [N, D] from its tiles' projector outputs <paramref name="tiles"/> [1 + GR*GC, p*p, D]
    /// (base first): the base tile's p*p rows, then the kept rows of the assembled grid, each followed by image_newline.
    /// </summary>
    public Tensor Pack(Tensor tiles, ImageTiling t)
    {
        int p = t.PatchesPerTile;
        long d = tiles.shape[2];
        if (tiles.shape[0] != 1 + t.TileRows * t.TileCols || tiles.shape[1] != (long)p * p)
            throw new ArgumentException($"{tiles.shape[0]} tiles of {tiles.shape[1]} features do not make 1 + {t.TileRows} x {t.TileCols} tiles of {p} x {p}");
        var baseFeatures = tiles[0];                                                         // [p*p, D]
        var grid = tiles.narrow(0, 1, tiles.shape[0] - 1)
            .view(t.TileRows, t.TileCols, p, p, d).permute(0, 2, 1, 3, 4)
            .reshape(t.FeatureRows, t.FeatureCols, d);                                       // [R, C, D]
        grid = grid.narrow(0, t.KeepRowStart, t.KeptRows).narrow(1, t.KeepColStart, t.KeptCols); // [R', C', D]
        var newline = image_newline.to(grid.dtype).view(1, 1, d).expand(t.KeptRows, 1, d);
        var rows = cat([grid, newline], 1).reshape(-1, d);                                   // [R' * (C' + 1), D]
        return cat([baseFeatures, rows], 0);
    }

    /// <summary>Token embeddings with the image tokens' rows replaced, in order, by the packed image features.</summary>
    /// <param name="inputIds">[B, T]</param><param name="pixels">[B, n_tiles, 3, S, S] or null.</param>
    /// <param name="imageLayouts">per row, its image layout with the tiling (required with pixels).</param>
    public Tensor Embed(Tensor inputIds, Tensor? pixels, IHookSet? hooks, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null)
    {
        var pass = HookPass.For(hooks, (int)inputIds.shape[0], (int)inputIds.shape[1], inputIds.device, imageLayouts);
        try { return Embed(inputIds, pixels, pass, imageLayouts); }
        finally { pass?.Info.Release(); }
    }

    private Tensor Embed(Tensor inputIds, Tensor? pixels, HookPass? hooks, IReadOnlyList<ImageTokenLayout?>? layouts) =>
        ImageEmbedding.Embed(language_model.Model.EmbedTokens.call, inputIds, Config.ImageTokenId, pixels, hooks,
            p => PackedFeatures(p, inputIds.shape[0], hooks, layouts), "packed features");

    /// <summary>The packed image features of each row: base tile, then the unpadded grid with a newline after each row.</summary>
    /// <returns>[B, N, D]</returns>
    private Tensor PackedFeatures(Tensor pixels, long batch, HookPass? hooks, IReadOnlyList<ImageTokenLayout?>? layouts)
    {
        if (pixels.dim() != 5 || pixels.shape[0] != batch)
            throw new ArgumentException($"LLaVA-NeXT pixels are [B, n_tiles, 3, S, S] with B = {batch}; got [{string.Join(", ", pixels.shape)}]");
        if (layouts is null || layouts.Count != batch || layouts.Any(l => l?.Tiling is null))
            throw new ArgumentException("a LLaVA-NeXT pass with an image needs each row's image layout with its tiling (from Prepare): it says how to pack the tiles");
        long nTiles = pixels.shape[1];
        var tileFeatures = TileFeatures(pixels.reshape(batch * nTiles, pixels.shape[2], pixels.shape[3], pixels.shape[4]), hooks)
            .view(batch, nTiles, -1, Config.Text.HiddenSize);                               // [B, n_tiles, p*p, D]
        var packed = new List<Tensor>();
        for (int b = 0; b < batch; b++)
        {
            var t = layouts[b]!.Tiling!;
            int used = 1 + t.TileRows * t.TileCols;                                          // batch padding tiles are dropped
            packed.Add(Pack(tileFeatures[b].narrow(0, 0, used), t));
        }
        return stack(packed, 0);                                                             // [B, N, D] (rows of one batch share N)
    }

    /// <returns>logits [B, R, V] (float32) at <paramref name="logitPositions"/> (null: last position).</returns>
    public Tensor Forward(Tensor inputIds, Tensor? pixels, IHookSet? hooks, long[]? logitPositions = null, IReadOnlyList<ImageTokenLayout?>? imageLayouts = null)
    {
        var pass = HookPass.For(hooks, (int)inputIds.shape[0], (int)inputIds.shape[1], inputIds.device, imageLayouts);
        try { return language_model.Run(Embed(inputIds, pixels, pass, imageLayouts), pass, logitPositions); }
        finally { pass?.Info.Release(); }
    }
}
