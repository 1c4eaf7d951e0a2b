namespace LlavaMech.Processing;

/// <summary>Token ids of one prompt, and where its image tokens are.</summary>
/// <param name="InputIds">BOS first, then the prompt; the image placeholder expanded to its image tokens.</param>
/// <param name="ImagePositions">Positions of the image tokens in <paramref name="InputIds"/>, ascending; empty without an image.</param>
public sealed record PromptEncoding(long[] InputIds, int[] ImagePositions);

/// <summary>
/// Turns a prompt into input ids the way Hugging Face's LlavaProcessor does: the single <c>&lt;image&gt;</c>
/// becomes <c>imageSeqLength</c> image tokens, the text around it is tokenized (the text after it as a piece
/// that follows a special token), and BOS is prepended.
/// </summary>
public sealed class PromptEncoder
{
    /// <summary>The placeholder a prompt uses for the image.</summary>
    public const string ImagePlaceholder = "<image>";

    private readonly ITextTokenizer _tokenizer;
    private readonly int _bosId;
    private readonly int? _imageTokenId;
    private readonly int _imageSeqLength;
    private readonly int _maxPositions;
    private readonly string _modelDir;

    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="bosId">Prepended to every prompt (<c>text_config.bos_token_id</c>).</param>
    /// <param name="imageTokenId">The image token (<c>image_token_index</c>); null for a text-only model.</param>
    /// <param name="imageSeqLength">Image tokens per image (<c>image_seq_length</c>: patches, +1 with strategy <c>full</c>).</param>
    /// <param name="maxPositions">Longest sequence the model takes (<c>max_position_embeddings</c>).</param>
    /// <param name="modelDir">The model folder, named in error messages.</param>
    public PromptEncoder(ITextTokenizer tokenizer, int bosId, int? imageTokenId, int imageSeqLength, int maxPositions, string modelDir)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (imageTokenId != null && imageSeqLength <= 0)
            throw new ArgumentOutOfRangeException(nameof(imageSeqLength), imageSeqLength, "a vision model needs at least one image token");
        if (maxPositions <= 0)
            throw new ArgumentOutOfRangeException(nameof(maxPositions), maxPositions, "must be positive");
        _tokenizer = tokenizer;
        _bosId = bosId;
        _imageTokenId = imageTokenId;
        _imageSeqLength = imageSeqLength;
        _maxPositions = maxPositions;
        _modelDir = modelDir ?? "";
    }

    /// <summary>Whether the model takes images (it has an image token).</summary>
    public bool IsVisionModel => _imageTokenId != null;

    /// <summary>
    /// Encodes <paramref name="prompt"/>. With <paramref name="hasImage"/> the prompt must hold exactly one
    /// <c>&lt;image&gt;</c>; without, none (a text-only prompt, also allowed through a vision model: the TQA setting).
    /// </summary>
    /// <exception cref="ProcessingException">The prompt does not fit the model or the image, or is too long.</exception>
    /// <param name="maxTokens">The longest accepted sequence (BOS and image tokens included); 0 or more than the model's
    /// max_position_embeddings: that. A prompt whose length in characters alone shows it is over is refused without
    /// being tokenized (see <see cref="MaxCharsPerToken"/>), so no huge prompt reaches the tokenizer.</param>
    /// <param name="imageTokens">Image tokens of this prompt's image, when they follow the image's size (LLaVA-NeXT); null:
    /// the model's fixed count.</param>
    public PromptEncoding Encode(string prompt, bool hasImage, int maxTokens = 0, int? imageTokens = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (imageTokens is <= 0) throw new ArgumentOutOfRangeException(nameof(imageTokens), imageTokens, "an image has at least one token");
        int imageSeqLength = imageTokens ?? _imageSeqLength;
        int limit = maxTokens > 0 && maxTokens < _maxPositions ? maxTokens : _maxPositions;
        string limitName = limit == _maxPositions ? $"{_maxPositions} positions (max_position_embeddings) of the model in {_modelDir}" : $"{limit} tokens (--max-prompt-tokens)";
        // Every token covers at most MaxCharsPerToken characters, so a longer text has more tokens than fit.
        long textBudget = Math.Max(0, limit - 1 - (hasImage && _imageTokenId != null ? imageSeqLength : 0));
        long maxChars = textBudget * MaxCharsPerToken + (hasImage ? ImagePlaceholder.Length : 0);
        if (MaxCharsPerToken > 0 && prompt.Length > maxChars)
            throw new ProcessingException(
                $"prompt is {prompt.Length} characters long, more than the {maxChars} that {textBudget} tokens of text can hold: over the limit of {limitName} (not tokenized)");
        int count = CountPlaceholders(prompt);

        if (_imageTokenId == null)
        {
            if (count > 0)
                throw new ProcessingException(
                    $"prompt has an {ImagePlaceholder} placeholder, but the model in {_modelDir} is text-only (no image token): remove it and give no image");
            if (hasImage)
                throw new ProcessingException(
                    $"an image was given, but the model in {_modelDir} is text-only (no image token): it cannot take an image");
        }
        else if (hasImage)
        {
            if (count == 0)
                throw new ProcessingException(
                    $"prompt has no {ImagePlaceholder} placeholder: with an image the prompt must contain exactly one, e.g. \"USER: <image>\\nWhat is shown?\\nASSISTANT:\"");
            if (count > 1)
                throw new ProcessingException(
                    $"prompt has {count} {ImagePlaceholder} placeholders: exactly one is allowed (one image per prompt)");
        }
        else if (count > 0)
        {
            throw new ProcessingException(
                $"prompt has {count} {ImagePlaceholder} placeholder{(count > 1 ? "s" : "")} but no image was given: remove {(count > 1 ? "them" : "it")} or give an image");
        }

        var ids = new List<long>(64 + (hasImage ? imageSeqLength : 0)) { _bosId };
        var positions = Array.Empty<int>();
        if (hasImage)
        {
            int at = prompt.IndexOf(ImagePlaceholder, StringComparison.Ordinal);
            var before = prompt[..at];
            var after = prompt[(at + ImagePlaceholder.Length)..];
            // LlavaProcessor writes imageSeqLength placeholders into the text; the empty text between them yields nothing.
            foreach (var id in _tokenizer.Encode(before)) ids.Add(id);
            int first = ids.Count;
            for (int i = 0; i < imageSeqLength; i++) ids.Add(_imageTokenId!.Value);
            foreach (var id in _tokenizer.EncodeAfterSpecialToken(after)) ids.Add(id);
            positions = Enumerable.Range(first, imageSeqLength).ToArray();
            // The text itself must not contribute image tokens (a tokenizer mapping some piece to the image id).
            int total = 0;
            foreach (var id in ids) if (id == _imageTokenId) total++;
            if (total != imageSeqLength)
                throw new ProcessingException($"prompt text encodes to the image token id {_imageTokenId} outside the {ImagePlaceholder} placeholder (model {_modelDir})");
        }
        else
        {
            foreach (var id in _tokenizer.Encode(prompt)) ids.Add(id);
            if (_imageTokenId != null && ids.Contains(_imageTokenId.Value))
                throw new ProcessingException($"prompt text encodes to the image token id {_imageTokenId} but no image was given (model {_modelDir})");
        }

        if (ids.Count > limit)
            throw new ProcessingException(
                $"prompt is {ids.Count} tokens long{(hasImage ? $" ({imageSeqLength} of them image tokens)" : "")}, more than the limit of {limitName}");

        return new PromptEncoding(ids.ToArray(), positions);
    }

    private int _maxCharsPerToken = -1;

    /// <summary>
    /// An upper bound on the characters one token covers: twice the longest vocabulary piece (the factor leaves room for
    /// normalizers that compose characters). 0 when the tokenizer has no vocabulary (no bound is applied).
    /// </summary>
    public int MaxCharsPerToken
    {
        get
        {
            if (_maxCharsPerToken < 0)
            {
                int longest = 0;
                for (int id = 0; id < _tokenizer.VocabSize; id++)
                    longest = Math.Max(longest, _tokenizer.IdToToken(id).Length);
                _maxCharsPerToken = 2 * longest;
            }
            return _maxCharsPerToken;
        }
    }

    private static int CountPlaceholders(string prompt)
    {
        int n = 0, i = 0;
        while ((i = prompt.IndexOf(ImagePlaceholder, i, StringComparison.Ordinal)) >= 0)
        {
            n++;
            i += ImagePlaceholder.Length;
        }
        return n;
    }
}
